"""The int8 decoder's one-token steps in one compiled call (``csrc/decoder_step.c``), beside the ONNX decoder graph.
The window's cross-attention keys and values are read as bfloat16 (``cross_bf16``).

A 5-beam tiny.en step through ONNX Runtime's ~250 kernels took ~7 ms on 2 cores; the compiled step does the same
arithmetic (the int8 graph's MatMulNBits numbers, float32 attention) in a few passes over the weights and the window's
cross-attention keys and values. It runs where the model is int8, the folder holds its packed weights
(``STEP_WEIGHTS``, written at export) and the CPU has AVX512-VNNI: every decoder call then (steps, drafts, a
window's prompt, word timing's alignment, the open windows of a batch whose others have ended); the graph, which reads
and writes the same cache, serves the other models and CPUs (``TINGXIE_DECODER=onnxruntime`` turns the compiled
step off).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .logits import Int8Logits, pack_weights
from .native import load_arrays, load_kernel, save_arrays, usable_cpus

REQUIRED_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "fma")
STEP_WEIGHTS = "decoder-step-int8.bin"  # beside the graphs of an int8 model folder
TOKEN_TABLE = "token-embedding.npy"  # the token table for the step's lookups, memory-mapped (float16 where exact)
D_HEAD = 64
QUERY_SCALE = np.float32(D_HEAD**-0.5)  # folded into the query weights, as the graph does
PER_LAYER = 24  # pointers per layer handed to the kernel, in csrc/decoder_step.c's order


def _product(weight: np.ndarray, bias: np.ndarray | None) -> dict[str, np.ndarray]:
    """A torch-layout (N, K) weight as the kernel's packed 8-bit blocks (the int8 graph's ``block_quantize``)."""
    from .quantize_plan import block_quantize

    packed, scales = pack_weights(*block_quantize(np.ascontiguousarray(weight.T, dtype=np.float32)))
    return {"w": packed, "s": scales, "b": np.zeros(weight.shape[0], np.float32) if bias is None else bias.astype(np.float32)}


def write_step_weights(folder: Path, state: Mapping[str, np.ndarray], n_layer: int) -> None:
    """The compiled step's weights for a model whose float32 arrays are ``state`` (the checkpoint's names)."""
    arrays: dict[str, np.ndarray] = {}

    def put(prefix: str, parts: dict[str, np.ndarray]) -> None:
        arrays.update({f"{prefix}.{name}": value for name, value in parts.items()})

    for i in range(n_layer):
        block = f"decoder.blocks.{i}"

        def get(name: str) -> np.ndarray:
            return np.asarray(state[f"{block}.{name}"], np.float32)

        qkv_w = np.concatenate([get("attn.query.weight") * QUERY_SCALE, get("attn.key.weight"), get("attn.value.weight")])
        qkv_b = np.concatenate([get("attn.query.bias") * QUERY_SCALE, np.zeros_like(get("attn.query.bias")), get("attn.value.bias")])
        put(f"{i}.qkv", _product(qkv_w, qkv_b))
        put(f"{i}.out", _product(get("attn.out.weight"), get("attn.out.bias")))
        put(f"{i}.cq", _product(get("cross_attn.query.weight") * QUERY_SCALE, get("cross_attn.query.bias") * QUERY_SCALE))
        put(f"{i}.co", _product(get("cross_attn.out.weight"), get("cross_attn.out.bias")))
        put(f"{i}.fc1", _product(get("mlp.0.weight"), get("mlp.0.bias")))
        put(f"{i}.fc2", _product(get("mlp.2.weight"), get("mlp.2.bias")))
        for ln in ("attn_ln", "cross_attn_ln", "mlp_ln"):
            arrays[f"{i}.{ln}.g"], arrays[f"{i}.{ln}.b"] = get(f"{ln}.weight"), get(f"{ln}.bias")
    arrays["ln.g"] = np.asarray(state["decoder.ln.weight"], np.float32)
    arrays["ln.b"] = np.asarray(state["decoder.ln.bias"], np.float32)
    arrays["positions"] = np.asarray(state["decoder.positional_embedding"], np.float32)
    save_arrays(folder / STEP_WEIGHTS, arrays)
    table = np.asarray(state["decoder.token_embedding.weight"], np.float32)
    half = table.astype(np.float16)
    exact = np.isfinite(half).all() and np.array_equal(half.astype(np.float32), table)
    np.save(folder / TOKEN_TABLE, half if exact else table)  # the official checkpoints are float16: half the bytes


class NativeDecoderStep:
    """(tokens (rows,), their position, the cache) -> the final hidden state (rows, state); writes the new keys and
    values into the cache's buffers at the row's next position."""

    def __init__(self, library: ctypes.CDLL, arrays: Mapping[str, np.ndarray], tokens: np.ndarray, n_layer: int, n_head: int,
                 threads: int):
        self._kernel = library.decoder_step
        p, i = ctypes.c_void_p, ctypes.c_int
        self._kernel.argtypes = [p, i, i, i, p, p, i, i, i, p, p, i, p, p, i, i, p, p, i, i, p, p, p, p, p, i, p, p, i]
        self._kernel.restype = i
        self._pack = library.cross_bf16
        self._pack.argtypes = [p, p, i, i, p, p]
        self._pack.restype = None
        self.n_layer, self.n_head, self.threads = n_layer, n_head, threads
        self._tokens = tokens
        self._positions = np.ascontiguousarray(arrays["positions"], np.float32)
        self.n_state = self._positions.shape[1]
        order = ["attn_ln.g", "attn_ln.b", "qkv.w", "qkv.s", "qkv.b", "out.w", "out.s", "out.b", "cross_attn_ln.g", "cross_attn_ln.b",
                 "cq.w", "cq.s", "cq.b", "co.w", "co.s", "co.b", "mlp_ln.g", "mlp_ln.b", "fc1.w", "fc1.s", "fc1.b", "fc2.w", "fc2.s", "fc2.b"]
        kept = [np.ascontiguousarray(arrays[f"{layer}.{name}"]) for layer in range(n_layer) for name in order]
        kept += [np.ascontiguousarray(arrays["ln.g"]), np.ascontiguousarray(arrays["ln.b"])]  # n_layer < the model's: its first layers
        self._kept = kept  # the kernel reads them through these pointers
        self._params = (ctypes.c_void_p * len(kept))(*[a.ctypes.data for a in kept])

    @staticmethod
    def _pointers(arrays: list[np.ndarray]):
        return (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])

    def step(self, tokens: np.ndarray, position: int, self_k: list[np.ndarray], self_v: list[np.ndarray], past: int,
             prefix_k: list[np.ndarray], prefix_v: list[np.ndarray], cross_kt: list[np.ndarray], cross_v: list[np.ndarray],
             group: int, heads: list[tuple[int, int]] | None = None, threads: int | None = None,
             vocabulary: Int8Logits | None = None, cache_rows: np.ndarray | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """tokens (rows, new) at positions ``position`` .. ``position + new - 1`` -> the final hidden states
        (rows, new, state); their keys and values go into ``self_k/v`` at ``past`` .. ``past + new - 1``. ``heads``:
        also these (layer, head) pairs' cross-attention scores before the softmax, (heads, rows x new, frames).
        ``threads``: this call's (default: the step's own). ``vocabulary``: the logits kernel whose weight this call
        also takes: the logits (rows, new, vocab) it would give for the hidden states, in place of them (one call
        and one start of threads a step, not two). ``cache_rows``: the cache's row of each of ``tokens``' rows (whole
        audios, in order: a batch's windows still decoding), whose keys and values are read and written there (and
        ``prefix_k/v`` and ``cross_kt/v`` at their audios); None: row i is the cache's row i."""
        rows, new = tokens.shape
        x = self._tokens[tokens.reshape(-1)].astype(np.float32).reshape(rows, new, -1) + self._positions[position : position + new]
        out = np.empty_like(x)
        for arrays, dtype in ((self_k, np.float32), (self_v, np.float32), (prefix_k, np.float32), (prefix_v, np.float32),
                              (cross_kt, np.uint16), (cross_v, np.uint16)):
            if not all(a.flags.c_contiguous and a.dtype == dtype for a in arrays):
                raise ValueError("the compiled decoder step takes C-contiguous float32 arrays (bfloat16 cross keys and values)")
        frames = cross_v[0].shape[2]
        pairs = np.asarray(heads or [], np.int32).reshape(-1, 2)
        layers, indices = np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])
        scores = np.empty((len(pairs), rows * new, frames), np.float32)
        if vocabulary is not None:
            if heads:
                raise ValueError("the compiled step gives the logits or the alignment heads' scores, not both")
            logits = np.empty((rows, new, vocabulary.n_vocab), np.float32)
            fused = (vocabulary.packed.ctypes.data, vocabulary.scales.ctypes.data, vocabulary.n_vocab, logits.ctypes.data)
        else:
            fused = (None, None, 0, None)
        if cache_rows is not None:
            cache_rows = np.ascontiguousarray(cache_rows, np.int32)
            if cache_rows.shape != (rows,) or (cache_rows.size and not 0 <= cache_rows.min() <= cache_rows.max() < self_k[0].shape[0]):
                raise ValueError(f"cache_rows must name a cache row for each of the {rows} rows")
        status = self._kernel(self._params, self.n_layer, self.n_head, self.n_state, x.ctypes.data, out.ctypes.data, rows, group, new,
                              self._pointers(prefix_k), self._pointers(prefix_v), prefix_k[0].shape[2], self._pointers(self_k),
                              self._pointers(self_v), self_k[0].shape[2], past, self._pointers(cross_kt), self._pointers(cross_v),
                              frames, len(pairs), layers.ctypes.data, indices.ctypes.data, scores.ctypes.data, *fused,
                              None if cache_rows is None else cache_rows.ctypes.data, threads or self.threads)
        if status == 1:
            raise MemoryError("the compiled decoder step could not allocate its work buffers")
        if status:
            raise ValueError(f"the compiled decoder step cannot take these sizes (rows {rows}, group {group}, past {past}, new {new})")
        if vocabulary is not None:
            return logits
        return out if heads is None else (out, scores)

    def cross_bf16(self, cross_k: list[np.ndarray], cross_vt: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """A window's cross keys (audio, head, frames, 64) and values (audio, head, 64, frames) per layer as the step
        reads them: bfloat16 (rounded to nearest even), the keys in blocks of 16 frames (audio, head, blocks, 64, 16)
        with zeros after the last frame, the values frames first (audio, head, frames, 64)."""
        keys, values = [], []
        for k, vt in zip(cross_k, cross_vt):
            audios, heads, frames, d_head = k.shape
            if d_head != D_HEAD or vt.shape != (audios, heads, D_HEAD, frames):
                raise ValueError(f"cross keys {k.shape} and values {vt.shape} do not pair")
            k, vt = np.ascontiguousarray(k, np.float32), np.ascontiguousarray(vt, np.float32)
            kb = np.empty((audios, heads, -(-frames // 16), D_HEAD, 16), np.uint16)
            vb = np.empty((audios, heads, frames, D_HEAD), np.uint16)
            self._pack(k.ctypes.data, vt.ctypes.data, audios * heads, frames, kb.ctypes.data, vb.ctypes.data)
            keys.append(kb)
            values.append(vb)
        return keys, values


def load_native_decoder(folder: Path, compute_type: str, n_layer: int, n_head: int, threads: int = 0) -> NativeDecoderStep | None:
    """The compiled step for an int8 model folder that holds its weights, on a CPU that runs it; else None."""
    weights, table = folder / STEP_WEIGHTS, folder / TOKEN_TABLE
    if compute_type != "int8" or os.environ.get("TINGXIE_DECODER") == "onnxruntime" or not weights.is_file() or not table.is_file():
        return None
    library = load_kernel("tingxie.ort._decoder_step", REQUIRED_FLAGS)
    if library is None:
        return None
    return NativeDecoderStep(library, load_arrays(weights), _TableRows(table), n_layer, n_head, threads or usable_cpus())


class _TableRows:
    """Rows of the token table read from its file as they are asked for (``table[tokens]``): mapping the 40 MB file
    left ~30 MiB of it resident after a transcription (a page per token seen, and the read-ahead around it)."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            shape, fortran, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
            self._offset = f.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{path} is not a row-major table")
        self.shape, self.dtype = shape, dtype
        self._row_bytes = shape[1] * dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def __getitem__(self, tokens: np.ndarray) -> np.ndarray:
        out = np.empty((len(tokens), self.shape[1]), self.dtype)
        for i, token in enumerate(np.asarray(tokens).tolist()):
            if not 0 <= token < self.shape[0]:
                raise IndexError(f"token {token} is outside the vocabulary of {self.shape[0]}")
            out[i] = np.frombuffer(os.pread(self._fd, self._row_bytes, self._offset + token * self._row_bytes), self.dtype)
        return out

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
