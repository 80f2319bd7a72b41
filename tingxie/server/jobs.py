"""The bounded work queue: N worker threads run the inference; at most N + max_queue jobs are admitted at once.

Admission is decided on the event loop (single-threaded, so a plain counter is exact). A request that finds
the server full is refused at once with 429 and a Retry-After estimated from recent job times, rather
than piling up memory and time until the server falls over.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ApiError

T = TypeVar("T")


class JobQueue:
    """Run blocking jobs off the event loop on ``workers`` threads, refusing more than ``workers + max_queue``."""

    def __init__(self, workers: int, max_queue: int) -> None:
        self.workers = workers
        self.capacity = workers + max_queue
        self.admitted = 0
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tingxie-worker")
        # an exponential moving average of job seconds, for Retry-After; a guess until the first job ends
        self._mean_seconds = 2.0

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the jobs ahead of a newcomer, spread over the workers."""
        ahead = max(self.admitted - self.workers + 1, 1)
        return max(1, math.ceil(self._mean_seconds * ahead / self.workers))

    def admit(self) -> Slot:
        """A slot for one job, or 429 when every worker is busy and the queue is full."""
        if self.admitted >= self.capacity:
            wait = self.retry_after()
            raise ApiError(
                429,
                f"The server is busy: {self.admitted} transcriptions are running or queued (the limit is {self.capacity}). "
                f"Retry after {wait} s.",
                type="rate_limit_error", code="rate_limit_exceeded", headers={"Retry-After": str(wait)},
            )
        self.admitted += 1
        return Slot(self)

    def _finished(self, seconds: float | None) -> None:
        self.admitted -= 1
        if seconds is not None:
            self._mean_seconds = 0.7 * self._mean_seconds + 0.3 * seconds

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait``, return once the running and queued ones are done."""
        self._executor.shutdown(wait=wait)


class Slot:
    """One admitted job. ``submit`` runs it on a worker; the slot is freed when that work ends (or if never used)."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._used = False
        self._released = False
        self._cleanups: list[Callable[[], None]] = []
        self.queued_at = time.perf_counter()
        self.started_at: float | None = None

    def on_release(self, cleanup: Callable[[], None]) -> None:
        """Call ``cleanup`` once the job's thread is done with its inputs (or the job never ran)."""
        self._cleanups.append(cleanup)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on a worker thread; the slot is released when it returns, even if nobody awaits it."""
        self._used = True

        def timed() -> T:
            self.started_at = time.perf_counter()
            return fn(*args)

        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the worker's log lines keep the request id
        work = self._queue._executor.submit(context.run, timed)

        # released when the thread is really done: a disconnected client must not free a slot still computing
        def done(f: Future) -> None:
            self._run_cleanups()
            seconds = None
            if not f.cancelled() and f.exception() is None and self.started_at is not None:
                seconds = time.perf_counter() - self.started_at
            try:
                loop.call_soon_threadsafe(self._release, seconds)
            except RuntimeError:  # the loop is already closed: the server is gone, nothing left to count
                pass

        work.add_done_callback(done)
        return asyncio.wrap_future(work, loop=loop)

    def _run_cleanups(self) -> None:
        cleanups, self._cleanups = self._cleanups, []
        for cleanup in cleanups:
            cleanup()

    def _release(self, seconds: float | None = None) -> None:
        if not self._released:
            self._released = True
            self._queue._finished(seconds)

    @property
    def queue_seconds(self) -> float:
        return (self.started_at or time.perf_counter()) - self.queued_at

    def close_unused(self) -> None:
        """Give the slot back when the request failed before any work was submitted."""
        if not self._used:
            self._run_cleanups()
            self._release()
