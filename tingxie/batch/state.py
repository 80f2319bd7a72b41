"""The job state file: an append-only JSON-lines log of what happened to each file.

One line per event (``done``, ``failed``, ``attempt_failed``), flushed and fsynced as it is written,
so a crash or kill -9 loses at most the line being written (a torn last line is ignored on reading).
The last ``done``/``failed`` line of a path is its state. A lock on the file keeps two jobs from
writing the same output folder at once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from ..errors import TingxieError
from ..weights.cache import describe_write_error

STATE_FILE_NAME = ".tingxie_batch.jsonl"
RERUN_HINT = "the files done so far are recorded; free some space or choose a writable --output_dir and run the same command again"


class JobLockedError(TingxieError):
    """Another batch job holds the state file."""


class BatchWriteError(TingxieError):
    """The job's outputs or state could not be written (full or read-only disk); the message names the path."""


def write_error(what: str, path: Path | str, error: OSError) -> BatchWriteError:
    """One line for a failed write: what, where and why, and how to go on."""
    return BatchWriteError(f"cannot write {what} {path}: {describe_write_error(error)}; {RERUN_HINT}")


@dataclass(frozen=True)
class FileRecord:
    path: str
    status: str  # "done" or "failed"
    key: str  # fingerprint of the model and options the outputs were made with
    outputs: tuple[str, ...] = ()
    duration: float | None = None
    error: str | None = None
    attempts: int = 1
    worker: str | None = None  # host:pid of the worker that transcribed it


class JobState:
    """Reads the records of earlier runs and appends new ones; use as a context manager (it holds a lock)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[str, FileRecord] = {}
        self._file = None

    def __enter__(self) -> Self:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # unbuffered, so a failed write is seen at once and never retried by close (held open, and locked, for the job)
            self._file = open(self.path, "a+b", buffering=0)
        except OSError as e:
            raise write_error("the job state file", self.path, e) from e
        self._lock()
        self._load()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; the job still works
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._file.close()
            self._file = None
            raise JobLockedError(f"another batch job is using {self.path}; wait for it or give another --output_dir") from e

    def _load(self) -> None:
        self._file.seek(0)
        data = self._file.read()
        for line in data.split(b"\n"):
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # empty or torn by a crash mid-write
            if isinstance(entry, dict) and entry.get("status") in ("done", "failed"):
                self.records[entry["path"]] = FileRecord(
                    path=entry["path"], status=entry["status"], key=entry.get("key", ""), outputs=tuple(entry.get("outputs", ())),
                    duration=entry.get("duration"), error=entry.get("error"), attempts=entry.get("attempts", 1),
                    worker=entry.get("worker"),
                )
        if data and not data.endswith(b"\n"):
            self._append_bytes(b"\n")  # so the next record starts on its own line

    def is_done(self, path: str, key: str, output_dir: Path) -> bool:
        """Done with the same model and options, and every output file still there."""
        record = self.records.get(path)
        return (
            record is not None and record.status == "done" and record.key == key
            and all((output_dir / name).is_file() for name in record.outputs)
        )

    def record(self, record: FileRecord) -> None:
        self.records[record.path] = record
        self._append({**record.__dict__, "outputs": list(record.outputs)})

    def attempt_failed(self, path: str, attempt: int, error: str, will_retry: bool) -> None:
        self._append({"path": path, "status": "attempt_failed", "attempts": attempt, "error": error, "will_retry": will_retry})

    def _append(self, entry: dict[str, Any]) -> None:
        entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._append_bytes((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))

    def _append_bytes(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:  # a raw file may take part of it (a nearly full disk): a torn line is skipped on reading
                view = view[self._file.write(view) :]
            os.fsync(self._file.fileno())
        except OSError as e:
            raise write_error("the job state file", self.path, e) from e
