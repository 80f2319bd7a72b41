"""What a batch job transcribes: the files of a folder, a glob pattern or a manifest, in a stable order."""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import TingxieError

# Extensions taken from a folder walk: audio, and video whose audio track ffmpeg decodes.
AUDIO_EXTENSIONS = frozenset({
    ".aac", ".ac3", ".aif", ".aifc", ".aiff", ".amr", ".ape", ".au", ".avi", ".caf", ".flac", ".flv", ".m4a", ".m4b", ".m4v",
    ".mka", ".mkv", ".mov", ".mp2", ".mp3", ".mp4", ".mpeg", ".mpg", ".oga", ".ogg", ".ogv", ".opus", ".ts", ".voc", ".wav",
    ".weba", ".webm", ".wma", ".wmv", ".wv", ".3gp",
})
# A file input with one of these extensions is a list of files, not audio.
MANIFEST_EXTENSIONS = frozenset({".txt", ".lst", ".list", ".tsv", ".csv", ".jsonl"})
_PATH_COLUMNS = ("path", "audio", "file", "filename", "audio_path")
_DURATION_COLUMNS = ("duration", "duration_s", "seconds")


class BatchInputError(TingxieError):
    """The batch input names nothing that can be walked (missing folder, empty pattern, unreadable manifest)."""


@dataclass(frozen=True)
class BatchItem:
    """One file of the job: its absolute path and, where known without decoding, its length in seconds."""

    path: str
    duration: float | None = None

    @property
    def stem(self) -> str:
        return Path(self.path).stem


def is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def walk_input(source: str | os.PathLike) -> list[BatchItem]:
    """The files named by ``source``: a folder (walked recursively for audio and video files, hidden
    entries skipped), a glob pattern (``**`` recurses), a manifest (.txt/.lst one path a line, .tsv/.csv
    with a ``path`` column and optional ``duration``, .jsonl with ``{"path": ...}``), or one audio file.

    Paths in a manifest are relative to the manifest's folder. Duplicates are dropped; order is kept
    for manifests and sorted otherwise.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        items = [BatchItem(str(p)) for p in _walk_folder(path)]
        if not items:
            raise BatchInputError(f"no audio or video files found under {text}")
    elif path.is_file():
        if path.suffix.lower() in MANIFEST_EXTENSIONS:
            items = _read_manifest(path)
        else:
            items = [BatchItem(str(path.resolve()))]
    elif is_glob(text):
        matches = sorted(p for p in glob.glob(os.path.expanduser(text), recursive=True) if os.path.isfile(p))
        if not matches:
            raise BatchInputError(f"the pattern {text!r} matches no files")
        items = [BatchItem(str(Path(p).resolve())) for p in matches]
    else:
        raise BatchInputError(f"{text} is neither a folder, a file nor a glob pattern that matches anything")
    return _unique(items)


def _walk_folder(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                found.append(Path(folder, name).resolve())
    return sorted(found)


def _read_manifest(manifest: Path) -> list[BatchItem]:
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise BatchInputError(f"cannot read the manifest {manifest}: {e}") from e
    base = manifest.resolve().parent
    suffix = manifest.suffix.lower()
    if suffix == ".jsonl":
        rows = _jsonl_rows(text, manifest)
    elif suffix in (".tsv", ".csv"):
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ","))
        if rows and not any(c in rows[0] for c in _PATH_COLUMNS):
            raise BatchInputError(f"the manifest {manifest} has no path column (one of: {', '.join(_PATH_COLUMNS)})")
    else:
        rows = [{"path": line.strip()} for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    items = []
    for row in rows:
        name = next((row[c] for c in _PATH_COLUMNS if row.get(c)), None)
        if not name:
            continue
        duration = next((row[c] for c in _DURATION_COLUMNS if row.get(c) not in (None, "")), None)
        full = Path(name).expanduser()
        full = full if full.is_absolute() else base / full
        items.append(BatchItem(str(full.resolve()), _float_or_none(duration)))
    if not items:
        raise BatchInputError(f"the manifest {manifest} lists no files")
    return items


def _jsonl_rows(text: str, manifest: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BatchInputError(f"{manifest}:{number}: not JSON ({e.msg})") from e
        rows.append(row if isinstance(row, dict) else {"path": str(row)})
    return rows


def _float_or_none(value: object) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _unique(items: list[BatchItem]) -> list[BatchItem]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item.path not in seen:
            seen.add(item.path)
            out.append(item)
    return out


def probe_duration(path: str) -> float | None:
    """The length in seconds from the container's header (no decoding); None where it cannot be read."""
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if container.duration is not None:
                return container.duration / 1_000_000
            stream = next(iter(container.streams.audio), None)
            if stream is not None and stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except Exception:  # noqa: BLE001 - a file PyAV cannot open is the worker's to report
        return None
    return None
