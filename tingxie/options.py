"""Frozen option dataclasses: the one source of truth for every decoding and transcription parameter.

The CLI and the server build these objects; nothing mutates them (variants come from
``dataclasses.replace``). Each field's ``help`` metadata is what ``--help`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .errors import OptionError

if TYPE_CHECKING:
    from .decoding.glossary import Glossary
    from .vad import VadOptions

# load_model's compute types: the CLIs and the server offer these, quantize.resolve_compute_type checks them
COMPUTE_TYPES = ("auto", "int8", "float32", "default")


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class DecodingOptions:
    """How one 30-s window is decoded."""

    task: str = _opt("transcribe", "'transcribe' (speech -> text in its language) or 'translate' (-> English)", choices=("transcribe", "translate"))
    language: str | None = _opt(None, "language spoken in the audio (code or name); None detects it from the first 30 s, auto in every 30-s window")
    temperature: float = _opt(0.0, "sampling temperature; 0 decodes greedily or by beam search")
    sample_len: int | None = _opt(None, "maximum number of tokens to sample per window (default: half the text context)")
    best_of: int | None = _opt(None, "number of independent samples to take when temperature > 0; the most likely is kept")
    beam_size: int | None = _opt(None, "number of beams in beam search when temperature is 0; None decodes greedily")
    patience: float | None = _opt(None, "beam search patience (arXiv:2204.05424); 1.0 is conventional beam search")
    length_penalty: float | None = _opt(None, "length penalty alpha (arXiv:1609.08144); None ranks by mean log-probability")
    prompt: str | tuple[int, ...] | None = _opt(None, "text or tokens of previous context, given after <|startofprev|>")
    prefix: str | tuple[int, ...] | None = _opt(None, "text or tokens the window's transcript is forced to start with")
    suppress_tokens: str | tuple[int, ...] | None = _opt("-1", "comma-separated token ids never to sample; '-1' adds the non-speech symbols")
    suppress_blank: bool = _opt(True, "suppress a blank or end-of-text as the first sampled token")
    without_timestamps: bool = _opt(False, "decode text only, with <|notimestamps|>")
    max_initial_timestamp: float | None = _opt(1.0, "latest time in seconds the first timestamp of a window may take")
    hotwords: str | Glossary | None = _opt(None, "comma-separated words or names to favour, each optionally with ':weight' (e.g. 'Kubernetes, ComfyUI:2'): "
                                                 "their tokens are boosted (hotword_boost), and put in the prompt if hotword_prompt_budget allows")
    hotwords_file: str | None = _opt(None, "a glossary file of words or names to favour, one a line, each optionally followed by a tab or ':' and a weight (a "
                                           "multiplier of hotword_boost); '#' lines are comments; added to hotwords")
    hotword_boost: float = _opt(4.0, "logit bonus for tokens that continue a hotword (half of it for a hotword's first token, none right after a completed "
                                     "one), times the term's weight; 0 keeps the hotwords in the prompt only; chosen with tingxie tune (bench/ADAPT.md: 2, 3, "
                                     "4 were better and better, 6 wrote terms over and over)")
    hotword_prompt_budget: int = _opt(0, "most tokens of hotwords also put in the prompt: the whole list where it fits (a short one helps tiny models spell "
                                         "terms that are said, e.g. 16 for a few terms), else only the terms the previous text already has; 0 puts none "
                                         "in a window's first pass (in bench/ADAPT.md a prompt of terms not said made tiny.en write lists; "
                                         "hotword_second_pass prompts only the terms a window seems to have)")
    hotword_second_pass: bool = _opt(True, "with hotwords, decode a window again where its text has terms that sound like hotwords but are spelled "
                                           "otherwise, with only those terms in the prompt; kept when it spells them and has about as many words")
    lm: str | None = _opt(None, "n-gram language model (.arpa or kenlm .bin, lower-case words without punctuation) fused into beam search; needs beam_size and "
                                "kenlm (pip install 'tingxie-asr[lm]')")
    lm_weight: float = _opt(0.05, "weight of the language model's natural-log word probability in beam search (shallow fusion); tune it for your LM with "
                                  "tingxie tune (0.05 came out of that on bench/ADAPT.md's domain LM, where 0.3 cost real English 2 points)")
    lm_bonus: float = _opt(0.0, "score added per completed word when a language model is used (offsets the LM's preference for fewer words; tune it with "
                                "lm_weight)")

    def check_window(self) -> None:
        """Combinations that only make sense per window (transcribe drops the one not used at a temperature)."""
        if self.beam_size is not None and self.best_of is not None:
            raise OptionError("beam_size and best_of can't be given together (beam search is for temperature 0, best_of for sampling)")
        if self.temperature == 0 and self.best_of is not None:
            raise OptionError("best_of with greedy sampling (temperature 0) is not compatible")
        if self.patience is not None and self.beam_size is None:
            raise OptionError("patience requires beam_size to be given")

    def __post_init__(self) -> None:
        from .tokenizer import normalize_language  # raises UnknownLanguageError for an unknown code or name

        normalize_language(self.language)
        if self.task not in ("transcribe", "translate"):
            raise OptionError(f"task must be 'transcribe' or 'translate', not {self.task!r}")
        if self.temperature < 0:
            raise OptionError(f"temperature must be >= 0, got {self.temperature}")
        if self.suppress_tokens is not None and isinstance(self.suppress_tokens, str):
            try:
                [int(t) for t in self.suppress_tokens.split(",") if t.strip()]
            except ValueError as e:
                raise OptionError(f"suppress_tokens must be comma-separated token ids, got {self.suppress_tokens!r}") from e
        if self.patience is not None and self.patience <= 0:
            raise OptionError(f"patience must be > 0, got {self.patience}")
        if self.length_penalty is not None and not 0 <= self.length_penalty <= 1:
            raise OptionError("length_penalty (alpha) should be a value between 0 and 1")
        for name in ("beam_size", "best_of", "sample_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(f"{name} must be >= 1, got {value}")
        if self.lm is not None:
            self._check_lm()
        if self.hotwords or self.hotwords_file:  # one typed glossary from both (hotwords stays a plain str where none)
            from .decoding.glossary import make_glossary

            object.__setattr__(self, "hotwords", make_glossary(self.hotwords, self.hotwords_file, self.hotword_prompt_budget))

    def _check_lm(self) -> None:
        """A language model needs its file, the kenlm package and beam search (the windows decoded at temperature 0)."""
        import importlib.util
        from pathlib import Path

        if not Path(self.lm).is_file():
            raise OptionError(f"language model file not found: {self.lm}")
        if importlib.util.find_spec("kenlm") is None:
            raise OptionError("a language model (lm) needs the kenlm package: pip install 'tingxie-asr[lm]'")
        if self.temperature == 0 and self.beam_size is None:
            raise OptionError("lm is fused into beam search: give beam_size too (e.g. 5); sampled windows (temperature > 0) ignore it")


@dataclass(frozen=True)
class TranscribeOptions:
    """Long-form transcription over sliding 30-s windows; ``decoding`` applies to each window."""

    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    temperature: tuple[float, ...] = _opt((0.0, 0.2, 0.4, 0.6, 0.8, 1.0), "temperatures tried in turn when a window's decode fails the thresholds")
    compression_ratio_threshold: float | None = _opt(2.4, "if the gzip compression ratio is higher than this, treat the decode as failed")
    logprob_threshold: float | None = _opt(-1.0, "if the average log probability is lower than this, treat the decode as failed")
    no_speech_threshold: float | None = _opt(0.6, "if <|nospeech|> is more likely than this AND the decode failed on logprob_threshold, the window is silence")
    condition_on_previous_text: bool = _opt(True, "give the previous window's text as the prompt of the next")
    initial_prompt: str | None = _opt(None, "text given as the prompt of the first window (vocabulary, spelling, style)")
    carry_initial_prompt: bool = _opt(False, "prepend initial_prompt to the prompt of every window")
    word_timestamps: bool = _opt(False, "word-level timestamps from cross-attention and dynamic time warping")
    prepend_punctuations: str = _opt("\"'“¿([{-", "with word timestamps, merge these symbols with the next word")
    append_punctuations: str = _opt("\"'.。,，!！?？:：”)]}、", "with word timestamps, merge these symbols with the previous word")
    clip_timestamps: tuple[float, ...] = _opt((), "start,end,start,end,... seconds of the clips to process; the last end defaults to the end")
    hallucination_silence_threshold: float | None = _opt(None, "with word timestamps, skip silences longer than this (s) around a likely hallucination")
    early_end_threshold: float | None = _opt(5.0, "when a window's decode ends on a lone timestamp with at least this many seconds of the window after it, the "
                                                  "next window starts at that timestamp (the model often stops early inside speech); None skips the rest of "
                                                  "the window, as the reference does")
    vad_filter: bool = _opt(False, "transcribe only the speech the Silero VAD finds (shipped in the package): longer pauses are skipped, not decoded (faster, "
                                   "and no words invented in silence or noise); times stay those of the whole audio. Batched mode always splits on speech")
    vad_threshold: float = _opt(0.5, "with vad_filter, a 32-ms window whose speech probability reaches this is speech")
    vad_min_silence_ms: int = _opt(2000, "with vad_filter, pauses shorter than this stay inside the speech around them")
    vad_speech_pad_ms: int = _opt(400, "with vad_filter, each stretch of speech is widened by this much on both sides")
    language_per_window: bool = _opt(False, "detect the language of every 30-s window, not just the first (code-switched audio); language 'auto' turns it on")
    chinese_script: str = _opt("as-is", "script of Chinese output: simplified or traditional (OpenCC converts text, segments and words) or as-is",
                               choices=("simplified", "traditional", "as-is"))
    chinese_prompt: bool = _opt(False, "with chinese_script simplified or traditional and no initial_prompt, prompt with a punctuated sentence in that script "
                                       "(adds punctuation; may cost accuracy)")
    diarize: bool = _opt(False, "label who speaks: every segment and word gets a speaker (SPEAKER_00, SPEAKER_01, ... in order of first words), segments split "
                                "where the speaker changes; the words are timed as with word_timestamps, the text is the one without diarize "
                                "(speaker encoder: pip install --no-deps Resemblyzer==0.1.4)")
    num_speakers: int | None = _opt(None, "with diarize, the number of speakers when known; None finds it")
    min_speakers: int | None = _opt(None, "with diarize, at least this many speakers when the count is found")
    max_speakers: int | None = _opt(None, "with diarize, at most this many speakers when the count is found")
    speaker_names: str | None = _opt(None, "with diarize and speaker_references, comma-separated names of the reference voices (e.g. 'Ana,Ben'): each speaker "
                                           "is named after the closest reference")
    speaker_references: str | None = _opt(None, "with diarize, comma-separated audio files of the known voices, one per name in speaker_names (a few seconds "
                                                "of each voice alone)")

    def __post_init__(self) -> None:
        if not self.temperature:
            raise OptionError("at least one temperature is needed")
        if any(t < 0 for t in self.temperature):
            raise OptionError(f"temperatures must be >= 0, got {self.temperature}")
        if any(b < a for a, b in zip(self.clip_timestamps[::2], self.clip_timestamps[1::2])):
            raise OptionError(f"clip_timestamps must be start,end pairs with end >= start, got {self.clip_timestamps}")
        if self.early_end_threshold is not None and not 0 < self.early_end_threshold <= 30:
            raise OptionError(f"early_end_threshold must be between 0 and 30 seconds (or None), got {self.early_end_threshold}")
        if self.hallucination_silence_threshold is not None and not self.aligns_words:
            raise OptionError("hallucination_silence_threshold requires word_timestamps")
        if self.vad_filter and self.clip_timestamps not in ((), (0.0,)):
            raise OptionError("vad_filter chooses the clips itself: give it or clip_timestamps, not both")
        if not 0 < self.vad_threshold < 1:
            raise OptionError(f"vad_threshold must be between 0 and 1, got {self.vad_threshold}")
        for name in ("vad_min_silence_ms", "vad_speech_pad_ms"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name} must be >= 0, got {getattr(self, name)}")
        from .chinese import check_script  # OpenCC itself is imported only when text is converted

        check_script(self.chinese_script)
        self._check_diarize()

    def _check_diarize(self) -> None:
        """Speaker options: counts >= 1 that agree, one name per reference file, files that exist; diarize needs words."""
        from pathlib import Path

        given = [n for n in ("num_speakers", "min_speakers", "max_speakers", "speaker_names", "speaker_references") if getattr(self, n) is not None]
        if given and not self.diarize:
            raise OptionError(f"{', '.join(given)} only apply with diarize=True (CLI --diarize True)")
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise OptionError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.num_speakers is not None and (self.min_speakers is not None or self.max_speakers is not None):
            raise OptionError("give num_speakers, or min_speakers/max_speakers, not both")
        if self.min_speakers is not None and self.max_speakers is not None and self.min_speakers > self.max_speakers:
            raise OptionError(f"min_speakers ({self.min_speakers}) is more than max_speakers ({self.max_speakers})")
        names = [n.strip() for n in (self.speaker_names or "").split(",") if n.strip()]
        files = [f.strip() for f in (self.speaker_references or "").split(",") if f.strip()]
        if len(set(names)) != len(names):
            raise OptionError(f"speaker_names must be different names, got {self.speaker_names!r}")
        if len(names) != len(files):
            raise OptionError(f"speaker_names and speaker_references must pair up: {len(names)} names, {len(files)} reference files")
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise OptionError(f"speaker reference file not found: {missing[0]}")

    @property
    def aligns_words(self) -> bool:
        """Whether words are timed: asked for, or for diarization (speakers are assigned word by word). Only
        word_timestamps lets the words' ends move the next window's start (the reference's rule), so diarizing keeps
        the windows, and so the text, of the same transcription without it."""
        return self.word_timestamps or self.diarize

    def vad_options(self) -> VadOptions:
        """The VAD settings of ``vad_filter`` (the VAD's own type; its model is loaded only when audio is filtered)."""
        from .vad import VadOptions

        return VadOptions(threshold=self.vad_threshold, min_silence_ms=self.vad_min_silence_ms, speech_pad_ms=self.vad_speech_pad_ms)

    def window_decoding(self, temperature: float) -> DecodingOptions:
        """The per-window options at one fallback temperature (beam search only at 0, best_of only above)."""
        from dataclasses import replace

        d = self.decoding
        if temperature > 0:
            return replace(d, temperature=temperature, beam_size=None, patience=None)
        return replace(d, temperature=0.0, best_of=None)


def temperature_schedule(start: float, increment: float | None) -> tuple[float, ...]:
    """The reference CLI's fallback schedule: start, start+increment, ... up to 1.0."""
    if increment is None or increment <= 0:
        return (start,)
    out, t = [], start
    while t <= 1.0 + 1e-6:
        out.append(round(t, 6))
        t += increment
    return tuple(out) or (start,)


def parse_clip_timestamps(value: str | tuple[float, ...] | list[float]) -> tuple[float, ...]:
    if isinstance(value, str):
        try:
            return tuple(float(t) for t in value.split(",") if t.strip())
        except ValueError as e:
            raise OptionError(f"clip_timestamps must be comma-separated seconds, got {value!r}") from e
    return tuple(float(t) for t in value)


def option_fields(cls: type) -> list:
    """The fields of an options class with their help text (for the CLI and the server)."""
    return [f for f in fields(cls) if "help" in f.metadata]


def build_options(**kwargs: Any) -> TranscribeOptions:
    """TranscribeOptions from flat keyword arguments named as in the reference's ``transcribe()``.

    ``temperature`` may be one number (no fallback) or a sequence; ``clip_timestamps`` a string or
    sequence; any DecodingOptions field (language, task, beam_size, best_of, ...) is accepted too.
    Unknown names raise OptionError.
    """
    decoding_names = {f.name for f in fields(DecodingOptions)}
    transcribe_names = {f.name for f in fields(TranscribeOptions)} - {"decoding"}
    decoding_kwargs, transcribe_kwargs = {}, {}
    for name, value in kwargs.items():
        if name == "temperature":
            transcribe_kwargs[name] = (float(value),) if isinstance(value, (int, float)) else tuple(float(t) for t in value)
        elif name == "clip_timestamps":
            transcribe_kwargs[name] = parse_clip_timestamps(value)
        elif name in transcribe_names:
            transcribe_kwargs[name] = value
        elif name in decoding_names:
            decoding_kwargs[name] = tuple(value) if isinstance(value, list) else value
        else:
            raise OptionError(f"unknown option {name!r}")
    return TranscribeOptions(decoding=DecodingOptions(**decoding_kwargs), **transcribe_kwargs)
