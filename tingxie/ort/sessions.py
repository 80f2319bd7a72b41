"""ONNX Runtime's session options for a model's graphs, made on first use.

Where every part of a model runs in the compiled kernels (an int8 model on a CPU that has them), no graph is
loaded and onnxruntime is never imported: its import took ~0.13-0.19 s of every command-line run.
"""

from __future__ import annotations

import os
import threading


class SessionOptions:
    """``options()``: the ``onnxruntime.SessionOptions`` for ``threads`` intra-op threads, made once. ``spin`` None:
    the threads spin between kernels only where the machine is idle when the options are made."""

    def __init__(self, threads: int, spin: bool | None = False, arena: bool = False):
        self.threads, self.spin, self.arena = threads, spin, arena
        self._made = None
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            if self._made is None:
                import onnxruntime as ort

                spin = machine_is_idle() if self.spin is None else self.spin
                self._made = session_options(ort, self.threads, spin, self.arena)
            return self._made


def session_options(ort, threads: int, spin: bool, arena: bool = False):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")  # no spinning once a run has returned
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    if arena and _shared_arena(ort):
        # the encoder's stages take their buffers from one arena, not one each (5 arenas: +160 MiB for tiny.en)
        options.add_session_config_entry("session.use_env_allocators", "1")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _shared_arena(ort) -> bool:
    """Registers onnxruntime's process-wide CPU arena, which only sessions that ask for it use (growing by what each
    run asks, not in powers of two); False where this onnxruntime refuses it (each session then keeps its own)."""
    try:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))
    except Exception:  # noqa: BLE001 - onnxruntime's own error types
        return False
    return True


def machine_is_idle(reads: int = 3) -> bool:
    """Whether other processes leave at least half the CPUs free right now: the fewest runnable threads not of this
    process over a few reads 5 ms apart (True where the count cannot be read): 3 reads, ~10 ms.
    This process's own runnable threads (the CLI's audio decoding, a BLAS thread still spinning) are not counted."""
    import time

    running = []
    for i in range(reads):
        count = runnable_threads()
        if count is None:
            return True
        running.append(count - _own_runnable_threads())
        if i + 1 < reads:
            time.sleep(0.005)
    return min(running) < max(1, (os.cpu_count() or 1) // 2)


def runnable_threads() -> int | None:
    """The kernel's count of runnable threads (Linux: "0.52 0.58 0.59 2/345 678" in /proc/loadavg), or None."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def _own_runnable_threads() -> int:
    """How many of this process's threads are runnable (state R in /proc/self/task/*/stat); 1 (this one) elsewhere."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    count = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat", encoding="ascii", errors="replace") as f:
                count += f.read().rsplit(")", 1)[1].split()[0] == "R"  # "pid (comm) R ...": comm may hold spaces
        except (OSError, IndexError):
            continue
    return max(1, count)
