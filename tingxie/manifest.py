"""Evaluation and training manifests: which audio files were said to contain which text.

A manifest is a TSV or CSV file whose header row names the columns ``audio`` and ``text``, or a JSON
Lines file with those keys. Optional: ``language`` (a code or name; per utterance) and ``terms``
(domain terms said in the utterance, separated by ``|``; a JSON list also works). Other columns
(speaker, snr, ...) are kept in ``extra``. Audio paths are relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import TingxieError

REQUIRED = ("audio", "text")
TERM_SEPARATOR = "|"


class ManifestError(TingxieError, ValueError):
    """A manifest that cannot be used: missing, empty, without the needed columns, or naming missing audio."""


@dataclass(frozen=True)
class ManifestRow:
    audio: Path
    text: str
    language: str | None = None
    terms: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()  # the other columns, in file order


def split_terms(value: object) -> tuple[str, ...]:
    """``"ComfyUI|LoRA"`` or ``["ComfyUI", "LoRA"]`` -> ("ComfyUI", "LoRA"); blanks dropped."""
    if value is None:
        return ()
    parts = value if isinstance(value, (list, tuple)) else str(value).split(TERM_SEPARATOR)
    return tuple(t for t in (str(p).strip() for p in parts) if t)


def read_terms(path: str | Path) -> tuple[str, ...]:
    """A vocabulary file: one term a line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ManifestError(f"cannot read the terms file {path}: {e.strerror or e}") from e
    terms = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not terms:
        raise ManifestError(f"the terms file {path} lists no terms (one a line)")
    return terms


def _records(path: Path, text: str) -> list[tuple[int, dict]]:
    """(line number, {column: value}) for each data row, keys lower-cased."""
    if path.suffix.lower() in (".jsonl", ".ndjson") or text.lstrip().startswith("{"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{number}: not a JSON object ({e.msg})") from e
            if not isinstance(record, dict):
                raise ManifestError(f"{path}:{number}: each line must be a JSON object with 'audio' and 'text'")
            rows.append((number, {str(k).strip().lower(): v for k, v in record.items()}))
        return rows
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if path.suffix.lower() == ".tsv" or "\t" in header else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ManifestError(
            f"{path}: the header row must name the columns {' and '.join(REQUIRED)}; missing {', '.join(missing)} "
            f"(found: {', '.join(columns) or 'nothing'}; delimiter {'tab' if delimiter == chr(9) else 'comma'})"
        )
    return [(reader.line_num, {k.strip().lower(): v for k, v in row.items() if k is not None}) for row in reader]


def _row(path: Path, number: int, record: dict) -> ManifestRow:
    from .tokenizer import normalize_language

    missing = [c for c in REQUIRED if record.get(c) is None]
    if missing:
        raise ManifestError(f"{path}:{number}: no {' or '.join(missing)} (every row needs audio and text)")
    audio = str(record["audio"]).strip()
    if not audio:
        raise ManifestError(f"{path}:{number}: the audio column is empty")
    language = str(record.get("language") or "").strip() or None
    try:
        language = normalize_language(language)
    except TingxieError as e:
        raise ManifestError(f"{path}:{number}: {e}") from e
    extra = tuple((k, "" if v is None else str(v)) for k, v in record.items() if k not in (*REQUIRED, "language", "terms"))
    return ManifestRow(audio=(path.parent / Path(audio).expanduser()).resolve(), text=str(record["text"]).strip(),
                       language=language, terms=split_terms(record.get("terms")), extra=extra)


def read_manifest(path: str | Path, *, check_audio: bool = True) -> list[ManifestRow]:
    """The rows of a manifest, in order; raises ManifestError naming the file and line of any problem.

    With ``check_audio`` every audio file must exist (all missing ones are listed at once).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets write a byte-order mark
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read the manifest {path}: {e}") from e
    rows = [_row(path, number, record) for number, record in _records(path, text)]
    if not rows:
        raise ManifestError(f"{path} has no utterances (a header row naming audio and text, then one row per utterance)")
    if check_audio:
        absent = [r.audio for r in rows if not r.audio.is_file()]
        if absent:
            listed = ", ".join(str(a) for a in absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
            raise ManifestError(f"{path}: {len(absent)} audio file(s) not found: {listed} (paths are relative to the manifest's folder)")
    return rows
