"""Pronunciation practice: how well does a recording say the sentence the learner meant to say?

Two readings of the same audio are compared. The *forced* reading runs the decoder through the
target text's tokens: it gives, per target word, the model's probability for that word given the
audio and the words before it, and (cross-attention + dynamic time warping, as for word
timestamps) where in the audio the word lies. The *free* reading is an ordinary greedy
transcription: what the model hears. Aligning the target words with the heard words tells a word
that was said well (ok) from one said poorly (unclear), left out (missed) or said as another
word (replaced by X).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import AudioDecodeError, OptionError

OK, UNCLEAR, MISSED, REPLACED = "ok", "unclear", "missed", "replaced"
# Credit a verdict earns towards the score (percent of the words said well).
_CREDIT = {OK: 1.0, UNCLEAR: 0.5, MISSED: 0.0, REPLACED: 0.0}
MAX_SECONDS = 30.0  # one decoder window: a sentence or two


@dataclass(frozen=True)
class PracticeOptions:
    """Thresholds of the verdicts (probabilities are the model's, for the whole word, in context)."""

    unclear_below: float = 0.25  # heard as written, but the model gives the word less than this: unclear
    accept_above: float = 0.75  # heard otherwise, but the model gives the target word at least this: still ok

    def __post_init__(self) -> None:
        if not 0 <= self.unclear_below <= 1 or not 0 <= self.accept_above <= 1:
            raise OptionError("practice thresholds are probabilities between 0 and 1")


@dataclass(frozen=True)
class WordResult:
    """One word of the target text."""

    word: str  # as written, with the punctuation next to it
    start: float
    end: float
    probability: float  # the model's probability of the word's tokens given the audio and the words before
    verdict: str  # ok, unclear, missed or replaced
    heard: str | None = None  # with 'replaced': what the free transcription has in its place

    @property
    def label(self) -> str:
        return f"replaced by {self.heard}" if self.verdict == REPLACED else self.verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "word": self.word, "start": round(self.start, 2), "end": round(self.end, 2),
            "probability": round(self.probability, 4), "verdict": self.verdict, "heard": self.heard, "label": self.label,
        }


@dataclass(frozen=True)
class PracticeResult:
    text: str  # the target text
    heard: str  # the free transcription
    language: str
    duration: float
    words: list[WordResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        """0-100: the share of target words said well (an unclear word counts half)."""
        if not self.words:
            return 0.0
        return round(100.0 * sum(_CREDIT[w.verdict] for w in self.words) / len(self.words), 1)

    @property
    def to_repeat(self) -> list[str]:
        """The target words not said well, once each, in order."""
        return list(dict.fromkeys(_bare(w.word) for w in self.words if w.verdict != OK))

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text, "heard": self.heard, "language": self.language, "duration": round(self.duration, 3),
            "score": self.score, "to_repeat": self.to_repeat, "words": [w.to_dict() for w in self.words],
        }


def decode_practice_audio(audio: Any) -> np.ndarray:
    """A recording's samples, decoded no further than MAX_SECONDS: a long upload is refused at the limit, not after."""
    from .audio import AudioTooLongError, decode_audio

    try:
        return decode_audio(audio, max_seconds=MAX_SECONDS)
    except AudioTooLongError as e:
        raise AudioDecodeError(f"practice takes up to {MAX_SECONDS:.0f} s of speech (a sentence or two); this audio is longer") from e


def practice(model: Any, audio: Any, text: str, *, language: str | None = None, options: PracticeOptions | None = None) -> PracticeResult:
    """Score a recording (path, bytes, file object or 16 kHz float32 array) against the text meant.

    ``model`` is a :class:`tingxie.api.WhisperModel`; ``language`` a code or name (detected where
    None on a multilingual model; English on an English-only one).
    """
    from .audio import SAMPLE_RATE

    options = options or PracticeOptions()
    text = " ".join(text.split())
    if not text:
        raise OptionError("practice needs the text the learner meant to say (--text)")
    samples = audio if isinstance(audio, np.ndarray) else decode_practice_audio(audio)
    duration = samples.size / SAMPLE_RATE
    if samples.size < SAMPLE_RATE // 4:
        raise AudioDecodeError(f"the recording is only {duration:.2f} s long; say the sentence and try again")
    if duration > MAX_SECONDS:
        raise AudioDecodeError(f"practice takes up to {MAX_SECONDS:.0f} s of speech (a sentence or two); this audio is {duration:.1f} s")
    language = _language(model, samples, language)
    heard = model.transcribe(samples, language=language, temperature=0.0, condition_on_previous_text=False).text.strip()
    target, said = units_of(text, language), units_of(heard, language)
    if not target:
        raise OptionError(f"the text {text!r} has no words to practise")
    pairs = align([u.key for u in target], [u.key for u in said])
    # written the way the model writes what it heard (case, punctuation, script), the forced reading
    # measures how the words sound rather than how they were typed
    styled = [said[j].surface if j is not None and said[j].key == u.key else u.surface for u, j in zip(target, pairs)]
    spans, probabilities = forced_reading(model, samples, styled, language)
    words = []
    for unit, j, (start, end), p in zip(target, pairs, spans, probabilities):
        heard_here = said[j] if j is not None else None
        verdict, instead = verdict_of(unit.key, p, heard_here.key if heard_here else None, options)
        words.append(WordResult(unit.display, start, end, p, verdict, heard_here.surface_bare if instead else None))
    return PracticeResult(text=text, heard=heard, language=language, duration=duration, words=words)


def _language(model: Any, samples: np.ndarray, language: str | None) -> str:
    from .tokenizer import normalize_language

    code = normalize_language(language)
    if not model.is_multilingual:
        if code not in (None, "en"):
            raise OptionError(f"{model.name or 'this model'} is English-only; practising {code!r} needs a multilingual model such as base")
        return "en"
    return code or model.detect_language(samples)[0]


# --- words ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A word (a character in languages written without spaces) of the target or the heard text."""

    display: str  # as written, with the punctuation around it
    surface: str  # what the forced reading spells (no punctuation in unspaced languages)
    key: str  # what is compared: lower case, letters and digits, Simplified for Chinese

    @property
    def surface_bare(self) -> str:
        return "".join(c for c in self.surface if _is_spoken(c) or c in "'-")


def _is_spoken(piece: str) -> bool:
    return any(unicodedata.category(c)[0] in "LN" for c in piece)


def _bare(word: str) -> str:
    """A word for comparison: lower case, letters, marks and digits only."""
    return "".join(c for c in unicodedata.normalize("NFKC", word).lower() if unicodedata.category(c)[0] in "LNM")


def units_of(text: str, language: str) -> list[Unit]:
    """The words of a text; the characters for Chinese, Japanese, Thai ... (punctuation joins a neighbour)."""
    from .tokenizer import UNSPACED_LANGUAGES

    chinese = language in ("zh", "yue")
    if chinese:
        from .chinese import convert

    def key(piece: str) -> str:
        bare = _bare(piece)
        return convert(bare, "simplified") if chinese else bare

    units: list[Unit] = []
    pending = ""  # punctuation waiting for the next word
    pieces = list(text) if language in UNSPACED_LANGUAGES else text.split()
    for piece in pieces:
        if not _is_spoken(piece):
            if units and not (language in UNSPACED_LANGUAGES and piece.isspace()):
                last = units[-1]
                units[-1] = Unit(last.display + piece, last.surface if language in UNSPACED_LANGUAGES else last.surface + piece, last.key)
            elif not piece.isspace():
                pending += piece
            continue
        units.append(Unit(pending + piece, piece if language in UNSPACED_LANGUAGES else pending + piece, key(piece)))
        pending = ""
    return units


def align(target: list[str], heard: list[str]) -> list[int | None]:
    """For each target word, the index of the heard word it lines up with (None: nothing heard there).

    A minimum edit-distance alignment (Levenshtein) with its backtrace; substitutions pair words.
    """
    n, m = len(target), len(heard)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j - 1] + (target[i - 1] != heard[j - 1]), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    pairs: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i, j] == cost[i - 1, j - 1] + (target[i - 1] != heard[j - 1]):
            pairs[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs


def verdict_of(key: str, probability: float, heard: str | None, options: PracticeOptions) -> tuple[str, bool]:
    """(verdict, whether the heard word replaced it) for one target word."""
    if heard == key:
        return (OK if probability >= options.unclear_below else UNCLEAR), False
    if probability >= options.accept_above:  # the free reading chose another spelling; the model accepts this one
        return OK, False
    if heard is None:
        return MISSED, False
    return REPLACED, True


# --- the forced reading ---------------------------------------------------------------------------


def forced_reading(model: Any, samples: np.ndarray, words: list[str], language: str) -> tuple[list[tuple[float, float]], list[float]]:
    """Per word: its (start, end) in seconds and the model's probability for it, from one pass of the
    decoder through the words' tokens (and its cross-attention, aligned by dynamic time warping).
    """
    from .audio import HOP_LENGTH, N_SAMPLES, pad_or_trim
    from .engine import window_features
    from .timing import find_alignment, softmax
    from .tokenizer import UNSPACED_LANGUAGES

    unspaced = language in UNSPACED_LANGUAGES
    # Whisper's transcripts of spaced languages start with a space; those of Chinese or Japanese do not
    text = "".join(words) if unspaced else "".join(" " + w for w in words)
    tokenizer = model.tokenizer(language, "transcribe")
    tokens = tokenizer.encode(text)
    if len(tokens) > model.dims.n_text_ctx // 2 - 4:
        raise OptionError(f"the text is too long to practise at once ({len(tokens)} tokens); split it into sentences")
    engine = model.engine
    features = window_features(engine, engine.log_mel(pad_or_trim(samples.astype(np.float32), N_SAMPLES)))
    pieces = find_alignment(engine, tokenizer, tokens, features, samples.size // HOP_LENGTH, model.alignment_heads)
    prefix = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    sequence = np.asarray([[*prefix, *tokens]], np.int64)
    logits = engine.decode(sequence, engine.new_cache(features))[0, len(prefix) - 1 : -1]
    probs = softmax(logits.astype(np.float32))
    # among the ways to go on with a word (or to stop): a comma the model would have put first is no fault of the speaker
    going_on = (probs * _word_or_end_mask(tokenizer, probs.shape[-1])).sum(axis=-1)
    chosen = probs[np.arange(len(tokens)), tokens]
    token_probs = np.minimum(chosen / np.maximum(going_on, 1e-12), 1.0).tolist()
    bounds, at = [], 0  # each word's character range in the text
    for w in words:
        at += 0 if unspaced else 1
        bounds.append((at, at + len(w)))
        at += len(w)
    return _word_stats(pieces, token_probs, bounds)


@lru_cache(maxsize=8)
def _word_or_end_mask_cached(encoding_name: str, eot: int, n_vocab: int, encoding: Any) -> Any:
    mask = np.zeros(n_vocab, dtype=bool)
    for token in range(min(eot, n_vocab)):
        try:
            text = encoding.decode_single_token_bytes(token).decode("utf-8")
        except UnicodeDecodeError:  # part of a character (Chinese, accents): part of a word
            mask[token] = True
            continue
        except KeyError:
            continue
        mask[token] = _is_spoken(text)
    if eot < n_vocab:
        mask[eot] = True
    return mask


def _word_or_end_mask(tokenizer: Any, n_vocab: int) -> Any:
    """Vocabulary mask of the tokens that spell (part of) a word, and end-of-text."""
    return _word_or_end_mask_cached(tokenizer.encoding.name, tokenizer.eot, n_vocab, tokenizer.encoding)


def _word_stats(pieces: list, token_probs: list[float], bounds: list[tuple[int, int]]) -> tuple[list[tuple[float, float]], list[float]]:
    """Spread the aligned pieces (groups of tokens) over the words by character position.

    A word's probability is the product over its spoken pieces (punctuation does not count); a piece
    that holds several characters (one token for 的时候) lends its probability to each and shares its time.
    """
    spans: list[list[float]] = [[] for _ in bounds]
    probs = [1.0] * len(bounds)
    touched = [False] * len(bounds)
    char, token = 0, 0
    for piece in pieces:
        p = float(np.prod(token_probs[token : token + len(piece.tokens)]))
        token += len(piece.tokens)
        lo, hi = char, char + len(piece.word)
        char = hi
        inside = [i for i, (a, b) in enumerate(bounds) if a < hi and lo < b]
        if not inside:
            continue
        step = (piece.end - piece.start) / len(inside)
        for k, i in enumerate(inside):
            spans[i] += [piece.start + k * step, piece.start + (k + 1) * step]
            if _is_spoken(piece.word):
                probs[i] *= p
                touched[i] = True
    out_spans = [(min(s), max(s)) if s else (0.0, 0.0) for s in spans]
    return out_spans, [p if t else 0.0 for p, t in zip(probs, touched)]


# --- reports --------------------------------------------------------------------------------------

REPORT_FORMATS = ("table", "json", "html")


def render(result: PracticeResult, fmt: str, samples: np.ndarray | None = None) -> str:
    """The result as a text table, JSON, or a self-contained HTML page (with the audio when given)."""
    if fmt == "json":
        import json

        return json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "table":
        return render_table(result)
    if fmt == "html":
        return render_html(result, samples)
    raise OptionError(f"unknown practice report format {fmt!r}; use one of {', '.join(REPORT_FORMATS)}")


def render_table(result: PracticeResult) -> str:
    width = max([len(w.word) for w in result.words] + [4])
    lines = [f"{'word':<{width}}  {'from':>6}  {'to':>6}  {'prob':>5}  verdict"]
    for w in result.words:
        lines.append(f"{w.word:<{width}}  {w.start:6.2f}  {w.end:6.2f}  {w.probability:5.2f}  {w.label}")
    lines += [
        "",
        f"heard:     {result.heard}",
        f"score:     {result.score:g} / 100",
        f"to repeat: {', '.join(result.to_repeat) if result.to_repeat else '(nothing: well said)'}",
    ]
    return "\n".join(lines) + "\n"


def wav_data_uri(samples: np.ndarray, sample_rate: int = 16000) -> str:
    """16-bit mono WAV of the samples as a data: URI, so the page plays without the original file."""
    import base64
    import io
    import wave

    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(result: PracticeResult, samples: np.ndarray | None = None) -> str:
    """A page with the words coloured by verdict; clicking a word plays it (when the audio is given)."""
    from html import escape
    from importlib.resources import files
    from string import Template

    from .tokenizer import LANGUAGES, UNSPACED_LANGUAGES

    template = Template(files("tingxie").joinpath("assets", "practice_report.html").read_text(encoding="utf-8"))
    joiner = "" if result.language in UNSPACED_LANGUAGES else " "
    spans = [
        f'<span class="w {w.verdict}" tabindex="0" data-start="{w.start:.2f}" data-end="{w.end:.2f}" '
        f'title="{escape(w.label)} (p={w.probability:.2f})">{escape(w.word)}</span>'
        for w in result.words
    ]
    rows = [
        f'<tr><td><span class="w {w.verdict}" data-start="{w.start:.2f}" data-end="{w.end:.2f}">{escape(w.word)}</span></td>'
        f'<td class="num">{w.start:.2f}</td><td class="num">{w.end:.2f}</td><td class="num">{w.probability:.2f}</td><td>{escape(w.label)}</td></tr>'
        for w in result.words
    ]
    score_class = "good" if result.score >= 85 else "fair" if result.score >= 60 else "poor"
    return template.substitute(
        score=f"{result.score:g}", score_class=score_class, language=escape(LANGUAGES.get(result.language, result.language).title()),
        duration=f"{result.duration:.1f}", audio_src=wav_data_uri(samples) if samples is not None else "",
        words_html=joiner.join(spans), rows_html="".join(rows), heard=escape(result.heard),
        to_repeat=escape(", ".join(result.to_repeat)) if result.to_repeat else "nothing: well said",
    )
