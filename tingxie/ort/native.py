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


ALIGN = 64  # each array of a kernel-weights file starts at a multiple of this (a cache line)


def save_arrays(path, arrays: dict) -> None:
    """Named arrays in one flat file, mapped back whole (``load_arrays``): a JSON index line, then each array's
    bytes. np.load of an .npz read its members through zipfile at ~3 ms per MB (a model's kernel weights: ~0.15 s of
    a command's start). Written beside and renamed: a process that has the old file mapped keeps reading it whole."""
    import json

    import numpy as np

    arrays = {name: np.asarray(value) if np.asarray(value).flags.c_contiguous else np.asarray(value).copy() for name, value in arrays.items()}
    index, offset = [], 0
    for name, value in arrays.items():
        offset = -(-offset // ALIGN) * ALIGN
        index.append({"name": name, "dtype": value.dtype.str, "shape": list(value.shape), "offset": offset})
        offset += value.nbytes
    header = json.dumps(index).encode("ascii") + b"\n"
    start = -(-(len(header) + 16) // ALIGN) * ALIGN
    partial = f"{path}.partial-{os.getpid()}"
    try:
        with open(partial, "wb") as f:
            f.write(b"TXARR1 " + str(start).rjust(8).encode("ascii") + b"\n" + header)
            for entry, value in zip(index, arrays.values()):
                f.seek(start + entry["offset"])
                f.write(value.tobytes())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def load_arrays(path) -> dict:
    """The arrays ``save_arrays`` wrote, as views of the file mapped whole (copy-on-write)."""
    import json
    import mmap

    import numpy as np

    # mapped with its pages populated: a CLI start maps ~50 MB in ~5 ms where reading it copied it in 20-170 ms
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 16 or not hasattr(mmap, "MAP_PRIVATE"):  # too short to be one (mmap refuses empty files); or no POSIX mmap
            data = np.fromfile(f, dtype=np.uint8)
        else:
            flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0)
            data = np.frombuffer(mmap.mmap(f.fileno(), size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE), dtype=np.uint8)
    if data[:7].tobytes() != b"TXARR1 ":
        raise ValueError(f"{path} is not a tingxie kernel-weights file")
    start = int(data[7:15].tobytes())
    end = data[16:start].tobytes().index(b"\n") + 16
    arrays = {}
    for entry in json.loads(data[16:end].tobytes()):
        dtype = np.dtype(entry["dtype"])
        count = int(np.prod(entry["shape"], dtype=np.int64))
        first = start + entry["offset"]
        flat = data[first : first + count * dtype.itemsize].view(dtype)
        arrays[entry["name"]] = flat.reshape(entry["shape"]) if entry["shape"] else flat.reshape(())
    return arrays
