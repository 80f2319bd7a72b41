"""Evaluate a model on a manifest: transcribe every utterance, score it (``scoring.py``), report.

    rows = read_manifest("test.tsv")
    report = evaluate(load_model("tiny.en"), rows, build_options(temperature=0.0))
    report.wer, report.cer, report.term_recall
    write_report(report.to_dict(), "report.json")
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .errors import TingxieError
from .manifest import ManifestError, ManifestRow, read_manifest, read_terms
from .normalizers import CHARACTER_LANGUAGES
from .options import TranscribeOptions
from .scoring import Scores, UtteranceScore, score_pairs, terms_in

__all__ = ["EvalReport", "ManifestError", "ManifestRow", "Utterance", "evaluate", "read_manifest", "read_terms", "score_pairs", "write_report"]

CHARACTER_NOTE = "for zh, ja, th and other languages written without spaces, wer is computed over characters with spaces removed (it equals their cer)"


@dataclass(frozen=True)
class Utterance:
    row: ManifestRow
    hypothesis: str  # the model's text, as transcribed
    language: str | None  # the language it was scored in
    duration: float  # seconds of audio
    seconds: float  # seconds spent transcribing it
    score: UtteranceScore


@dataclass(frozen=True)
class EvalReport:
    model: str
    options: TranscribeOptions
    scores: Scores
    utterances: tuple[Utterance, ...]
    seconds: float
    manifest: str | None = None

    @property
    def wer(self) -> float:
        return self.scores.wer

    @property
    def cer(self) -> float:
        return self.scores.cer

    @property
    def term_recall(self) -> float | None:
        return self.scores.term_recall

    @property
    def audio_seconds(self) -> float:
        return sum(u.duration for u in self.utterances)

    @property
    def rtf(self) -> float | None:
        """Real-time factor: seconds spent per second of audio (below 1 is faster than real time)."""
        audio = self.audio_seconds
        return self.seconds / audio if audio else None

    def summary(self) -> dict[str, Any]:
        s = self.scores
        return {"wer": s.wer, "cer": s.cer, "term_recall": s.term_recall}

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: totals, then one entry per utterance in manifest order."""
        s = self.scores
        data: dict[str, Any] = {
            "model": self.model, "manifest": self.manifest, "n": len(self.utterances),
            "wer": s.wer, "cer": s.cer, "unit": s.unit,
            "term_recall": s.term_recall, "term_hits": s.term_hits, "term_occurrences": s.term_occurrences,
            "reference_words": s.reference_words, "substitutions": s.substitutions, "deletions": s.deletions, "insertions": s.insertions,
            "audio_seconds": round(self.audio_seconds, 3), "seconds": round(self.seconds, 3),
            "rtf": None if self.rtf is None else round(self.rtf, 4),
            "normalizer": "Whisper's English normaliser for en; NFKC, lower-case, punctuation and symbols removed for other languages",
            "options": _jsonable(asdict(self.options)),
        }
        if any(u.language in CHARACTER_LANGUAGES for u in self.utterances):
            data["note"] = CHARACTER_NOTE
        data["utterances"] = [_utterance_dict(u) for u in self.utterances]
        return data


def _utterance_dict(u: Utterance) -> dict[str, Any]:
    s = u.score
    entry: dict[str, Any] = {
        "audio": str(u.row.audio), "language": u.language, "reference": u.row.text, "hypothesis": u.hypothesis,
        "normalized_reference": s.reference, "normalized_hypothesis": s.hypothesis,
        "wer": float(s.wer), "cer": float(s.cer), "errors": s.errors, "reference_words": s.reference_words,
        "duration": round(u.duration, 3), "seconds": round(u.seconds, 3),
    }
    if s.terms:
        entry.update(terms=list(s.terms), terms_hit=list(s.terms_hit), terms_missed=list(s.terms_missed))
    if u.row.extra:
        entry["extra"] = dict(u.row.extra)
    return entry


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _row_options(options: TranscribeOptions, row: ManifestRow, multilingual: bool) -> TranscribeOptions:
    """A row's own language is used when the options leave the language open and the model can take it."""
    if row.language and options.decoding.language is None and multilingual:
        return replace(options, decoding=replace(options.decoding, language=row.language))
    return options


def evaluate(model, rows: list[ManifestRow], options: TranscribeOptions, *, progress: bool = True,
             vocabulary: tuple[str, ...] | None = None, manifest: str | Path | None = None, desc: str = "evaluating") -> EvalReport:
    """Transcribe each row with ``model`` (a WhisperModel) and ``options``, and score the texts.

    Each utterance is scored in its manifest language, else the options' language, else the
    language the model detected. Terms come from the manifest's ``terms`` column; where a row has
    none and a ``vocabulary`` is given, the vocabulary's terms found in its reference are used.
    """
    from tqdm import tqdm

    if not rows:
        raise ManifestError("nothing to evaluate: the manifest has no utterances")
    started = time.perf_counter()
    texts, durations, spent, languages = [], [], [], []
    for row in tqdm(rows, desc=desc, unit="utt", disable=not progress, leave=False):
        t0 = time.perf_counter()
        try:
            result = model.transcribe(str(row.audio), _row_options(options, row, model.is_multilingual))
        except TingxieError as e:
            raise type(e)(f"{row.audio}: {e}") from e
        spent.append(time.perf_counter() - t0)
        texts.append(result.text.strip())
        durations.append(result.duration)
        languages.append(row.language or options.decoding.language or result.language)
    seconds = time.perf_counter() - started
    terms = [row.terms or (terms_in(row.text, vocabulary, lang) if vocabulary else ()) for row, lang in zip(rows, languages)]
    scores = score_pairs([r.text for r in rows], texts, languages, terms=terms)
    utterances = tuple(
        Utterance(row=row, hypothesis=text, language=lang, duration=d, seconds=t, score=score)
        for row, text, lang, d, t, score in zip(rows, texts, languages, durations, spent, scores.utterances)
    )
    return EvalReport(model=getattr(model, "name", "") or "model", options=options, scores=scores, utterances=utterances,
                      seconds=seconds, manifest=None if manifest is None else str(manifest))


def write_report(data: dict[str, Any], path: str | Path) -> Path:
    """Write JSON atomically: a temporary file in the same folder, then a rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def format_table(report: EvalReport, *, width: int = 100) -> str:
    """The per-utterance table: WER, CER, terms found, file, and the normalised texts where they differ."""
    lines = [f"{'#':>4}  {'WER':>6}  {'CER':>6}  {'terms':>5}  audio"]
    for i, u in enumerate(report.utterances, start=1):
        s = u.score
        terms = f"{s.term_hits}/{s.term_occurrences}" if s.term_occurrences else "-"
        lines.append(f"{i:>4}  {s.wer:6.1%}  {s.cer:6.1%}  {terms:>5}  {u.row.audio.name}")
        if s.reference != s.hypothesis:
            lines.append(f"{'':>6}ref: {_clip(s.reference, width)}")
            lines.append(f"{'':>6}hyp: {_clip(s.hypothesis, width)}")
        if s.terms_missed:
            lines.append(f"{'':>6}missed terms: {', '.join(s.terms_missed)}")
    return "\n".join(lines)


def format_summary(report: EvalReport, label: str = "") -> str:
    recall = "" if report.term_recall is None else f"  term recall {report.term_recall:.1%} ({report.scores.term_hits}/{report.scores.term_occurrences})"
    rtf = "" if report.rtf is None else f"  RTF {report.rtf:.3f}"
    unit = " (characters)" if report.scores.unit == "character" else ""
    return (f"{label}{report.model}: {len(report.utterances)} utterances, WER {report.wer:.2%}{unit}  CER {report.cer:.2%}{recall}"
            f"  {report.audio_seconds:.1f} s of audio in {report.seconds:.1f} s{rtf}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
