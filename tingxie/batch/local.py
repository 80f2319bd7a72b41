"""The local back end: worker processes, each holding one model, fed one file at a time over a pipe.

One file in flight per worker means the driver always knows which file a dead worker was holding:
that file is reported lost (and retried), a fresh worker takes the slot, and the other workers never
notice. Workers ignore Ctrl-C (the driver stops them) and exit when the driver's end of the pipe closes,
so even a driver killed with SIGKILL leaves no worker behind for long.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from .inputs import BatchItem
from .pool import MAX_START_FAILURES, Completion, WorkerStartError
from .work import OK, Transcriber, WorkSpec, run_one

# How long close() waits for a worker to exit after asking, then after SIGTERM, before SIGKILL.
_EXIT_GRACE_S = 5.0


def _worker_main(conn: Connection, factory: Callable[[WorkSpec, int], Callable[[Any], dict]], spec: WorkSpec, slot: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the driver decides
    try:
        transcribe = factory(spec, slot)
    except BaseException as e:  # noqa: BLE001 - the driver ends the job with this reason
        conn.send(("fatal", f"{type(e).__name__}: {e}" if not str(e) else str(e)))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if message is None:
            return
        task, path = message
        try:
            conn.send((task, run_one(transcribe, path)))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    process: Any
    conn: Connection
    ready: bool = False
    task: int | None = None


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"the worker process was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"the worker process died (exit code {exitcode})"


class LocalPool:
    """``size`` worker processes started with ``spawn`` (safe with torch threads and CUDA)."""

    def __init__(self, spec: WorkSpec, size: int, factory: Callable[[WorkSpec, int], Callable[[Any], dict]] = Transcriber):
        self.spec, self.size, self.factory = spec, size, factory
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._start_failures = 0
        self.lost = 0  # workers that died while holding a file

    def describe(self) -> str:
        threads = f", {self.spec.threads} thread{'s' if self.spec.threads != 1 else ''} each" if self.spec.threads else ""
        return f"{self.size} local worker process{'es' if self.size != 1 else ''}{threads}"

    def limit(self, files: int) -> None:
        self.size = max(1, min(self.size, files))

    def start(self) -> None:
        for slot in range(self.size):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, self.factory, self.spec, slot), name=f"tingxie-batch-{slot}", daemon=True)
        process.start()
        child.close()  # only the worker holds its end, so its death reads as EOF here
        self._workers[slot] = _Worker(process, parent)

    def free_slots(self) -> int:
        return sum(1 for w in self._workers.values() if w.ready and w.task is None)

    def busy(self) -> bool:
        return any(w.task is not None for w in self._workers.values())

    def submit(self, task: int, item: BatchItem) -> None:
        worker = next(w for w in self._workers.values() if w.ready and w.task is None)
        worker.task = task
        try:
            worker.conn.send((task, item.path))
        except (BrokenPipeError, OSError):
            pass  # it died just now; wait() sees its sentinel and reports the file lost

    def wait(self, timeout: float) -> list[Completion]:
        by_conn = {w.conn: slot for slot, w in self._workers.items()}
        by_sentinel = {w.process.sentinel: slot for slot, w in self._workers.items()}
        ready = wait([*by_conn, *by_sentinel], timeout)
        completions: list[Completion] = []
        dead = {by_sentinel[r] for r in ready if r in by_sentinel}
        for r in ready:
            if r in by_conn:
                slot = by_conn[r]
                if not self._receive(slot, completions):
                    dead.add(slot)
        for slot in sorted(dead):
            self._replace(slot, completions)
        return completions

    def _receive(self, slot: int, completions: list[Completion]) -> bool:
        """Read every message waiting from ``slot``; False once its pipe is closed."""
        worker = self._workers[slot]
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "ready":
                    worker.ready = True
                    self._start_failures = 0
                elif message[0] == "fatal":
                    raise WorkerStartError(f"a worker could not start: {message[1]}")
                else:
                    task, outcome = message
                    worker.task = None
                    if outcome[0] == OK:
                        completions.append(Completion(task, payload=outcome[1]))
                    else:
                        completions.append(Completion(task, reason=outcome[2], permanent=outcome[1]))
        except (EOFError, OSError):
            return False
        return True

    def _replace(self, slot: int, completions: list[Completion]) -> None:
        worker = self._workers[slot]
        self._receive(slot, completions)  # a result sent just before dying still counts
        worker.process.join(1.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()
        if not worker.ready:
            self._start_failures += 1
            if self._start_failures >= MAX_START_FAILURES:
                raise WorkerStartError(f"workers keep dying before they are ready: {_exit_reason(worker.process.exitcode)}")
        if worker.task is not None:
            self.lost += 1
            completions.append(Completion(worker.task, reason=_exit_reason(worker.process.exitcode), lost=True))
        self._spawn(slot)

    def close(self) -> None:
        for worker in self._workers.values():
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._workers.values():
            worker.process.join(_EXIT_GRACE_S if worker.task is None else 0.1)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(_EXIT_GRACE_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers.clear()
