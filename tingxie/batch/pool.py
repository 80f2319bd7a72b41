"""What the driver needs from a pool of workers, local processes or Ray actors alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import TingxieError
from .inputs import BatchItem

# A worker that dies this many times before it ever gets ready ends the job: something is wrong with
# the set-up (model, memory, device), not with one file.
MAX_START_FAILURES = 3


class WorkerStartError(TingxieError):
    """A worker could not load the model; every other worker would fail the same way."""


@dataclass(frozen=True)
class Completion:
    """What became of one submitted file: a result payload, or a reason it failed (``permanent`` when a
    retry would fail the same way, ``lost`` when the worker itself died or vanished with it)."""

    task: int
    payload: dict[str, Any] | None = None
    reason: str = ""
    permanent: bool = False
    lost: bool = False

    @property
    def ok(self) -> bool:
        return self.payload is not None


class WorkerPool(Protocol):
    size: int

    def limit(self, files: int) -> None:
        """Start no more workers than ``files``; called before ``start``."""

    def start(self) -> None: ...

    def free_slots(self) -> int:
        """How many more files can be submitted now (workers that are ready and idle)."""

    def busy(self) -> bool:
        """Whether any submitted file has not completed yet."""

    def submit(self, task: int, item: BatchItem) -> None: ...

    def wait(self, timeout: float) -> list[Completion]:
        """Completions that arrived within ``timeout`` seconds (maybe none); replaces workers that died."""

    def close(self) -> None: ...

    def describe(self) -> str: ...
