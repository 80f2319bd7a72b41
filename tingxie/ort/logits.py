"""The decoder's last product, its hidden state against the vocabulary (logits), apart from the decoder graph.

int8 models on CPUs with AVX512-VNNI run the compiled kernel ``csrc/logits_int8.c``, which reads the 8-bit weight
once per call for all of a step's rows (ONNX Runtime's MatMulNBits took time in proportion to the rows: a quarter of
a 5-beam tiny.en step), with MatMulNBits' numbers; every other model, CPU or install runs the exporter's one-node
graph ``logits.onnx`` (MatMulNBits for int8, MatMul for float32).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from .native import load_arrays, load_kernel, save_arrays, usable_cpus

REQUIRED_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "fma")
KERNEL_WEIGHTS = "logits-int8.bin"  # beside the graphs of an int8 model folder: the kernel's packed weight and scales
LANES = 16  # outputs per panel of the packed weight
GROUP = 4  # bytes along K that one VNNI lane sums


def pack_weights(quantized: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MatMulNBits' 8-bit weight (N, K / block, block) uint8 and its scales (N, K / block) -> the kernel's layout:
    [N / 16][K / 4][16][4] bytes and [N / 16][K / block][16] floats, N padded to a multiple of 16 (zero-point bytes,
    zero scales)."""
    n, blocks, block = quantized.shape
    k = blocks * block
    padded = -(-n // LANES) * LANES
    values = np.full((padded, k), 128, np.uint8)
    values[:n] = quantized.reshape(n, k)
    wide = np.zeros((padded, blocks), np.float32)
    wide[:n] = scales
    packed = values.reshape(padded // LANES, LANES, k // GROUP, GROUP).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(packed), np.ascontiguousarray(wide.reshape(padded // LANES, LANES, blocks).transpose(0, 2, 1))


def write_kernel_weights(folder: Path, token_embedding: np.ndarray) -> None:
    """The kernel's weights for a model whose logits weight is ``token_embedding`` (vocab, state), as the int8 graphs
    quantize it (``quantize_plan.block_quantize`` of its transpose)."""
    from .quantize_plan import block_quantize

    packed, scales = pack_weights(*block_quantize(np.ascontiguousarray(token_embedding.T)))
    save_arrays(folder / KERNEL_WEIGHTS, {"packed": packed, "scales": scales, "n_vocab": np.int64(token_embedding.shape[0])})


class Int8Logits:
    """(rows..., state) float32 -> (rows..., vocab) through the compiled kernel."""

    kind = "int8 kernel"

    def __init__(self, library: ctypes.CDLL, packed: np.ndarray, scales: np.ndarray, n_vocab: int, threads: int):
        self._kernel = library.logits_int8
        pointer, integer = ctypes.c_void_p, ctypes.c_int
        self._kernel.argtypes = [pointer, integer, integer, pointer, pointer, integer, pointer, integer]
        self._kernel.restype = integer
        self.packed, self.scales = packed, scales  # the compiled decoder step also takes them (a step's logits in its call)
        self.n_vocab, self.n_state, self.threads = n_vocab, packed.shape[1] * GROUP, threads

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        if hidden.shape[-1] != self.n_state:
            raise ValueError(f"hidden states must end in {self.n_state}, not {hidden.shape}")
        rows = np.ascontiguousarray(hidden.reshape(-1, self.n_state), dtype=np.float32)
        out = np.empty((*hidden.shape[:-1], self.n_vocab), np.float32)
        if rows.shape[0] and self._kernel(rows.ctypes.data, rows.shape[0], self.n_state, self.packed.ctypes.data, self.scales.ctypes.data,
                                          self.n_vocab, out.ctypes.data, self.threads):
            raise MemoryError("the logits kernel could not allocate its work buffers")
        return out


class OrtLogits:
    """The same product as ONNX Runtime's graph ``logits.onnx``."""

    kind = "onnxruntime"

    def __init__(self, session):
        self._session = session

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"hidden": np.ascontiguousarray(hidden, dtype=np.float32)})[0]


def load_logits(folder: Path, graph: str, compute_type: str, session_options, threads: int = 0) -> Int8Logits | OrtLogits:
    """The kernel for int8 models on CPUs that have it (``TINGXIE_LOGITS=onnxruntime`` turns it off), else the graph."""
    weights = folder / KERNEL_WEIGHTS
    wanted = compute_type == "int8" and weights.is_file() and os.environ.get("TINGXIE_LOGITS") != "onnxruntime"
    library = load_kernel("tingxie.ort._logits_int8", REQUIRED_FLAGS) if wanted else None
    if library is not None:
        stored = load_arrays(weights)
        return Int8Logits(library, stored["packed"], stored["scales"], int(stored["n_vocab"]), threads or usable_cpus())
    import onnxruntime as ort

    return OrtLogits(ort.InferenceSession(str(folder / graph), session_options(), providers=["CPUExecutionProvider"]))
