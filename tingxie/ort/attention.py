"""The encoder's self-attention between its ONNX stages: bfloat16 products where the CPU has them, else float32.

The exported encoder is cut at each attention (``export.EncoderStage``): ONNX Runtime's CPU MultiHeadAttention
computes in float32 only, and on a 2-core AVX-512 machine it was ~55 % of a tiny.en int8 window (~87 of ~156 ms).
int8 models run the compiled kernel ``csrc/attention_bf16.c`` on CPUs with AVX512-BF16 (its products at twice the
float32 rate: ~12 instead of ~20 ms per layer); float32 models, other CPUs and installs without the compiled
kernel run the same attention as a one-node ONNX Runtime graph.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from .native import cpu_has, load_kernel, usable_cpus

D_HEAD = 64  # every Whisper model's head size, which the kernel assumes
REQUIRED_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "fma")
TILE_FLAGS = ("amx_tile", "amx_bf16")  # the kernel's tile path (Sapphire Rapids and later), where Linux grants the tiles


class Bf16Attention:
    """Unmasked attention of projected q, k, v (audio, time, heads * 64) through the compiled kernel: its products as
    AMX tiles where ``tiles`` (``tiles_ready``), else as AVX512-BF16 vectors (on a 2-core Intel Xeon guest with AMX the
    vectors took ~40 ms per tiny.en layer, more than ONNX Runtime's float32 attention)."""

    def __init__(self, library: ctypes.CDLL, n_head: int, threads: int, tiles: bool = False):
        self._kernel = library.attention_bf16
        pointer, integer = ctypes.c_void_p, ctypes.c_int
        self._kernel.argtypes = [pointer, pointer, pointer, pointer, integer, integer, integer, integer, integer]
        self._kernel.restype = integer
        self.n_head, self.threads, self.tiles = n_head, threads, tiles
        self.kind = "bfloat16 (AMX tiles)" if tiles else "bfloat16"

    def __call__(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``out``: a C-contiguous float32 array shaped as q to write into (default: a new one)."""
        q, k, v = (np.ascontiguousarray(x, dtype=np.float32) for x in (q, k, v))
        if not q.shape == k.shape == v.shape or q.ndim != 3 or q.shape[2] != self.n_head * D_HEAD:
            raise ValueError(f"q, k, v must be (audio, time, {self.n_head * D_HEAD}) alike, not {q.shape}, {k.shape}, {v.shape}")
        if out is None:
            out = np.empty_like(q)
        elif out.shape != q.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 {q.shape} array")
        if out.size == 0:
            return out
        if self._kernel(q.ctypes.data, k.ctypes.data, v.ctypes.data, out.ctypes.data, q.shape[0], q.shape[1], self.n_head, self.threads,
                        int(self.tiles)):
            raise MemoryError("the attention kernel could not allocate its work buffers")
        return out


class OrtAttention:
    """The same attention as ONNX Runtime's float32 MultiHeadAttention (``attention.onnx`` of the export)."""

    kind = "float32"

    def __init__(self, session):
        self._session = session

    def __call__(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"q": q, "k": k, "v": v})[0]


def load_attention(folder: Path, compute_type: str, n_head: int, n_state: int, session_options, threads: int = 0):
    """The kernel for int8 models with 64-wide heads on CPUs that have it (``TINGXIE_ATTENTION=float32`` turns it
    off), else ONNX Runtime's float32 attention."""
    wanted = compute_type == "int8" and n_state == n_head * D_HEAD and os.environ.get("TINGXIE_ATTENTION") != "float32"
    library = bf16_library() if wanted else None
    if library is not None:
        return Bf16Attention(library, n_head, threads or usable_cpus(), tiles=tiles_ready(library))
    import onnxruntime as ort

    return OrtAttention(ort.InferenceSession(str(folder / "attention.onnx"), session_options(), providers=["CPUExecutionProvider"]))


def bf16_library() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it was not built (optional at install) or the CPU lacks AVX512-BF16."""
    return load_kernel("tingxie.ort._attention_bf16", REQUIRED_FLAGS)


def tiles_ready(library: ctypes.CDLL) -> bool:
    """Whether the kernel can use AMX tiles here: the CPU has them, Linux grants this process their state, and
    ``TINGXIE_ATTENTION`` is not ``vectors``."""
    if os.environ.get("TINGXIE_ATTENTION") == "vectors" or not cpu_has(TILE_FLAGS):
        return False
    library.amx_ready.restype = ctypes.c_int
    return library.amx_ready() == 1


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether every instruction set the kernel is compiled for is on this CPU (and enabled by the OS: Linux lists
    AVX-512 flags only then). False where /proc/cpuinfo cannot be read."""
    return cpu_has(REQUIRED_FLAGS, cpuinfo)
