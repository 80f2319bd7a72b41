"""The bounded work queue: N worker threads run the inference; at most N + max_queue jobs are admitted at once.

Admission is decided on the event loop (single-threaded, so a plain counter is exact). A request that finds
the server full is refused at once with 429 and a Retry-After estimated from recent job times, rather
than piling up memory and time until the server falls over.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ApiError

T = TypeVar("T")


class JobCancelled(Exception):
    """Raised on a worker between windows once its request is cancelled: client gone, time limit passed, or shutdown."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # client_disconnected, request_timeout or shutting_down


class JobQueue:
    """Run blocking jobs off the event loop on ``workers`` threads, refusing more than ``workers + max_queue``.

    Every admitted job may be cancelled (its slot's ``cancel``); the worker sees it at its next ``check``.
    ``max_seconds`` is each request's wall-clock limit from admission (None: no limit).
    """

    def __init__(self, workers: int, max_queue: int, max_seconds: float | None = None) -> None:
        self.workers = workers
        self.capacity = workers + max_queue
        self.admitted = 0
        self.max_seconds = max_seconds
        self._live: set[Slot] = set()
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
        slot = Slot(self)
        self._live.add(slot)
        return slot

    def cancel_all(self, reason: str = "the server is shutting down") -> int:
        """Cancel every admitted job (each stops at its next window); returns how many there were."""
        live = list(self._live)
        for slot in live:
            slot.cancel(reason, "shutting_down")
        return len(live)

    def _finished(self, slot: Slot, seconds: float | None) -> None:
        self._live.discard(slot)
        self.admitted -= 1
        if seconds is not None:
            self._mean_seconds = 0.7 * self._mean_seconds + 0.3 * seconds

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs and drop the queued ones; with ``wait``, return once the running ones are done."""
        self._executor.shutdown(wait=wait, cancel_futures=True)


class Slot:
    """One admitted job. ``submit`` runs it on a worker; the slot is freed when that work ends (or if never used)."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._used = False
        self._released = False
        self._cleanups: list[Callable[[], None]] = []
        self.queued_at = time.perf_counter()
        self.started_at: float | None = None
        self.deadline = None if queue.max_seconds is None else self.queued_at + queue.max_seconds
        self._cancelled: JobCancelled | None = None
        self.cancelled = threading.Event()

    def cancel(self, reason: str, code: str) -> None:
        """Ask the job to stop (from any thread); the first reason given is the one reported."""
        if self._cancelled is None:
            self._cancelled = JobCancelled(reason, code)
        self.cancelled.set()

    def check(self) -> None:
        """On the worker, between windows: raise JobCancelled once the job is cancelled or past its time limit."""
        if self._cancelled is None and self.deadline is not None and time.perf_counter() > self.deadline:
            limit = self._queue.max_seconds
            self.cancel(f"the request took longer than this server's limit of {limit:g} s", "request_timeout")
        if self._cancelled is not None:
            raise self._cancelled

    def on_release(self, cleanup: Callable[[], None]) -> None:
        """Call ``cleanup`` once the job's thread is done with its inputs (or the job never ran)."""
        self._cleanups.append(cleanup)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on a worker thread; the slot is released when it returns, even if nobody awaits it."""
        self._used = True

        def timed() -> T:
            self.started_at = time.perf_counter()
            self.check()  # cancelled while it waited in the queue: don't start
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
            self._queue._finished(self, seconds)

    @property
    def queue_seconds(self) -> float:
        return (self.started_at or time.perf_counter()) - self.queued_at

    def close_unused(self) -> None:
        """Give the slot back when the request failed before any work was submitted."""
        if not self._used:
            self._run_cleanups()
            self._release()
