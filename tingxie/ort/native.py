"""The compiled kernels beside ONNX Runtime (``csrc/``): whether this CPU runs them, and loading them.

Each kernel is built for one set of instructions (optional at install: setup.py) and used only where the CPU reports
every one of them (Linux lists AVX-512 flags only where the OS enables them)."""

from __future__ import annotations

import ctypes
import importlib.util
import os


def cpu_has(flags: tuple[str, ...], cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU reports every one of ``flags``; False where /proc/cpuinfo cannot be read."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return all(flag in present for flag in flags)
    except OSError:
        pass
    return False


def load_kernel(module: str, flags: tuple[str, ...]) -> ctypes.CDLL | None:
    """The compiled extension ``module`` (e.g. ``tingxie.ort._logits_int8``), or None where it was not built or the CPU
    lacks one of ``flags``."""
    if not cpu_has(flags):
        return None
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    try:
        return ctypes.CDLL(spec.origin)
    except OSError:
        return None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
