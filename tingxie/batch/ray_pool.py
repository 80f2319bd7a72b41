"""The Ray back end: a pool of actors, each loading the model once, fed one file at a time.

The driver reads each file and sends its bytes (no shared file system needed), keeps at most one file
in flight per actor (back-pressure: memory stays bounded however long the job), and writes every
result itself. An actor that dies, or whose node is lost, fails only the file it held: that file is
retried on another actor and a replacement actor is started wherever the cluster has room.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import TingxieError
from .inputs import BatchItem
from .pool import MAX_START_FAILURES, Completion, WorkerStartError
from .work import OK, Transcriber, WorkSpec, describe_error, run_one


class RayUnavailableError(TingxieError):
    """Ray is not installed, or the cluster cannot be reached."""


class BatchTranscriber:
    """The actor: one model per actor, loaded when the actor starts."""

    def __init__(self, factory: Callable[[WorkSpec, int | None], Callable[[Any], dict]], spec: WorkSpec):
        self._error: str | None = None
        try:
            self._transcribe = factory(spec, None)  # Ray sets CUDA_VISIBLE_DEVICES per actor: no slot mapping
        except Exception as e:  # noqa: BLE001 - reported by ready(), so the driver can end the job clearly
            self._error = describe_error(e)[1]

    def ready(self) -> tuple[str, str]:
        if self._error is not None:
            return ("fatal", self._error)
        return ("ready", f"{socket.gethostname()}:{os.getpid()}")

    def transcribe(self, audio: bytes) -> tuple:
        return run_one(self._transcribe, audio)


@dataclass
class _Actor:
    handle: Any
    pending: Any  # the ObjectRef of ready() until ready, then of the file in flight (or None)
    ready: bool = False
    task: int | None = None


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise RayUnavailableError("--ray needs Ray: pip install 'tingxie-asr[batch]' (or ray) on the driver and on every node") from e
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when a host:port address answers nothing (Ray itself retries at length)."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise RayUnavailableError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one with `ray start --head`") from e


class RayPool:
    """``size`` actors on the cluster at ``address`` ('auto' finds the one started on this machine).

    ``size`` None uses the whole cluster: its CPUs / ``cpus_per_worker`` (or GPUs / ``gpus_per_worker``).
    """

    def __init__(
        self, spec: WorkSpec, address: str, size: int | None = None, *, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
        factory: Callable[[WorkSpec, int | None], Callable[[Any], dict]] = Transcriber,
    ):
        threads = spec.threads or max(1, int(cpus_per_worker))
        self.spec = replace(spec, threads=threads)
        self.address, self.size = address, size or 0
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker
        self.factory = factory
        self._wanted_size = size
        self._actors: dict[int, _Actor] = {}
        self._immediate: list[Completion] = []
        self._start_failures = 0
        self._owns_connection = False
        self._limit: int | None = None
        self.lost = 0

    def describe(self) -> str:
        gpus = f", {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        return f"{self.size} Ray actor{'s' if self.size != 1 else ''} ({self.cpus_per_worker:g} CPU{gpus} each) on {self.address}"

    def limit(self, files: int) -> None:
        self._limit = max(1, files)

    def start(self) -> None:
        ray = _import_ray()
        if not ray.is_initialized():
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise RayUnavailableError(f"cannot connect to the Ray cluster at {self.address!r}: {e}") from e
            self._owns_connection = True
        if not self._wanted_size:
            resources = ray.cluster_resources()
            fits = [int(resources.get(name, 0) // need) for name, need in (("CPU", self.cpus_per_worker), ("GPU", self.gpus_per_worker)) if need]
            self.size = max(1, min(fits, default=1))
        if self._limit:
            self.size = min(self.size, self._limit)
        # max_restarts=0: a dead actor's file is retried by the driver, on whichever actor is free first
        self._actor_class = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_restarts=0)(BatchTranscriber)
        for slot in range(self.size):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        handle = self._actor_class.remote(self.factory, self.spec)
        self._actors[slot] = _Actor(handle, handle.ready.remote())

    def free_slots(self) -> int:
        return sum(1 for a in self._actors.values() if a.ready and a.task is None)

    def busy(self) -> bool:
        return bool(self._immediate) or any(a.task is not None for a in self._actors.values())

    def submit(self, task: int, item: BatchItem) -> None:
        try:
            with open(item.path, "rb") as f:
                audio = f.read()
        except OSError as e:
            self._immediate.append(Completion(task, reason=f"cannot read the file: {e.strerror or e}", permanent=True))
            return
        actor = next(a for a in self._actors.values() if a.ready and a.task is None)
        actor.task = task
        actor.pending = actor.handle.transcribe.remote(audio)

    def wait(self, timeout: float) -> list[Completion]:
        ray = _import_ray()
        completions, self._immediate = self._immediate, []
        by_ref = {a.pending: slot for slot, a in self._actors.items() if a.pending is not None}
        if not by_ref:
            return completions
        first, _ = ray.wait(list(by_ref), num_returns=1, timeout=0 if completions else timeout)
        if first:
            done, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
            for ref in done:
                self._collect(by_ref[ref], ref, completions)
        return completions

    def _collect(self, slot: int, ref: Any, completions: list[Completion]) -> None:
        ray = _import_ray()
        actor = self._actors[slot]
        actor.pending = None
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # an exception outside run_one's guard: treat as transient
            outcome = ("error", False, str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
        except ray.exceptions.RayError as e:  # the actor died, its node was lost, or its result was lost
            self._lose(slot, f"the Ray actor was lost ({type(e).__name__})", completions)
            return
        if not actor.ready:
            if outcome[0] != "ready":
                raise WorkerStartError(f"a Ray actor could not start: {outcome[-1]}")
            actor.ready = True
            self._start_failures = 0
            return
        task, actor.task = actor.task, None
        if outcome[0] == OK:
            completions.append(Completion(task, payload=outcome[1]))
        else:
            completions.append(Completion(task, reason=outcome[2], permanent=outcome[1]))

    def _lose(self, slot: int, reason: str, completions: list[Completion]) -> None:
        ray = _import_ray()
        actor = self._actors[slot]
        if not actor.ready:
            self._start_failures += 1
            if self._start_failures >= MAX_START_FAILURES:
                raise WorkerStartError(f"Ray actors keep dying before they are ready: {reason}")
        if actor.task is not None:
            self.lost += 1
            completions.append(Completion(actor.task, reason=reason, lost=True))
        with contextlib.suppress(Exception):  # it is already gone
            ray.kill(actor.handle, no_restart=True)
        self._spawn(slot)

    def close(self) -> None:
        ray = _import_ray()
        for actor in self._actors.values():
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor.handle, no_restart=True)
        self._actors.clear()
        if self._owns_connection and ray.is_initialized():
            ray.shutdown()
            self._owns_connection = False
