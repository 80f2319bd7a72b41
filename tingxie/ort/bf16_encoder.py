"""The int8 models' encoder on CPUs with AVX512-BF16: every product in bfloat16 (``csrc/linear_bf16.c``), no ONNX Runtime.

ONNX Runtime's int8 encoder scales each activation tensor as a whole, and its error (~6 % on tiny.en's cross K) was all
of the int8 models' remaining WER gap to float32 (issue 23: the float32 encoder with the int8 decoder scores as float32
does); its float32 products cost ~+120 ms per tiny.en window. Here the convolutions (as products over each frame's
window of 3), the blocks' q/k/v, out, fc1 and fc2 and the decoder's cross K/V products run in bfloat16 with float32
sums (AMX tiles where the CPU has them, else AVX512-BF16 vectors: Zen 4/5, Cooper Lake), LayerNorm and GELU fused into
them, and the attention in ``attention.py``'s bfloat16 kernel.

The kernel's packed weights come from the checkpoint's float32 arrays (``WEIGHTS_FILE`` beside the graphs, made on the
first load of a folder without it, from the checkpoint the folder names): the int8 folder holds only quantized ones.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from .attention import D_HEAD, REQUIRED_FLAGS, Bf16Attention, bf16_library, tiles_ready
from .native import load_arrays, load_kernel, save_arrays, usable_cpus

WEIGHTS_FILE = "encoder-bf16.bin"  # native.save_arrays' format: read in one call (an .npz went through zipfile, ~3 ms/MB)
WEIGHTS_VERSION = 3  # bump when the packed layout or the stored arrays change: a folder's file is then made again
# the kernel's epilogue flags and output layouts (csrc/linear_bf16.c); BF16_IN is set for a bfloat16 x
GELU, ACCUMULATE, HEADS, TRANSPOSED, BF16_OUT, BF16_IN = 1, 2, 4, 8, 16, 32


def pack_weight(weight: np.ndarray) -> np.ndarray:
    """A (K, N) float32 weight -> the kernel's bfloat16 layout [N' / 16][K' / 2][16][2] uint16 (rounded to nearest even;
    K' = K and N' = N rounded up to 32, zero padding): per panel of 16 outputs, pairs of consecutive K (AMX's B tiles)."""
    k, n = weight.shape
    kp, np_ = -(-k // 32) * 32, -(-n // 32) * 32
    padded = np.zeros((kp, np_), np.float32)
    padded[:k, :n] = weight
    bits = padded.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    return np.ascontiguousarray(rounded.reshape(kp // 2, 2, np_ // 16, 16).transpose(2, 0, 3, 1))


def kernel_weights(state: dict[str, np.ndarray], n_audio_layer: int, n_text_layer: int) -> dict[str, np.ndarray]:
    """The encoder's arrays as the kernel takes them, from a checkpoint's canonical float32 ones (PyTorch layout:
    Linear weights (out, in), Conv1d weights (out, in, width))."""
    def f32(name: str) -> np.ndarray:
        return np.ascontiguousarray(state[name], dtype=np.float32)

    def conv(name: str) -> np.ndarray:  # (out, in, 3) -> (3 * in, out): a row of frames t-1, t, t+1, each all channels
        weight = f32(name)
        return pack_weight(weight.transpose(2, 1, 0).reshape(-1, weight.shape[0]))

    out = {"version": np.int64(WEIGHTS_VERSION), "conv1": conv("encoder.conv1.weight"), "conv1_bias": f32("encoder.conv1.bias"),
           "conv2": conv("encoder.conv2.weight"), "conv2_bias": f32("encoder.conv2.bias"),
           "positions": f32("encoder.positional_embedding"), "ln_post_w": f32("encoder.ln_post.weight"), "ln_post_b": f32("encoder.ln_post.bias")}
    for i in range(n_audio_layer):
        p = f"encoder.blocks.{i}."
        q, k, v = (f32(f"{p}attn.{name}.weight") for name in ("query", "key", "value"))
        out[f"{i}.qkv"] = pack_weight(np.concatenate([q, k, v]).T)
        out[f"{i}.qkv_bias"] = np.concatenate([f32(f"{p}attn.query.bias"), np.zeros(len(k), np.float32), f32(f"{p}attn.value.bias")])
        out[f"{i}.out"], out[f"{i}.out_bias"] = pack_weight(f32(f"{p}attn.out.weight").T), f32(f"{p}attn.out.bias")
        out[f"{i}.fc1"], out[f"{i}.fc1_bias"] = pack_weight(f32(f"{p}mlp.0.weight").T), f32(f"{p}mlp.0.bias")
        out[f"{i}.fc2"], out[f"{i}.fc2_bias"] = pack_weight(f32(f"{p}mlp.2.weight").T), f32(f"{p}mlp.2.bias")
        for norm in ("attn_ln", "mlp_ln"):
            out[f"{i}.{norm}_w"], out[f"{i}.{norm}_b"] = f32(f"{p}{norm}.weight"), f32(f"{p}{norm}.bias")
    # every decoder layer's cross K in one product over ln_post's output, every layer's V in another
    keys = [f32(f"decoder.blocks.{i}.cross_attn.key.weight") for i in range(n_text_layer)]
    values = [f32(f"decoder.blocks.{i}.cross_attn.value.weight") for i in range(n_text_layer)]
    out["cross_keys"], out["cross_values"] = pack_weight(np.concatenate(keys).T), pack_weight(np.concatenate(values).T)
    out["cross_values_bias"] = np.concatenate([f32(f"decoder.blocks.{i}.cross_attn.value.bias") for i in range(n_text_layer)])
    return out


def folder_weights(folder: Path) -> dict[str, np.ndarray] | None:
    """The folder's kernel weights, made from the checkpoint it was exported from where absent (written beside the
    graphs when the folder is writable); None where that checkpoint cannot be read."""
    path = folder / WEIGHTS_FILE
    try:
        stored = load_arrays(path)
        if int(stored["version"]) == WEIGHTS_VERSION:
            return stored
    except Exception:  # noqa: BLE001 - absent, cut short or damaged: made again
        pass
    from ..weights.arrays import load_array_checkpoint

    try:
        source = json.loads((folder / "meta.json").read_text(encoding="utf-8"))["source"]
        if source is None:  # a module exported as it was (tests, fine-tuning): no checkpoint to read
            return None
        checkpoint = load_array_checkpoint(source, download=False)
        weights = kernel_weights(checkpoint.state, checkpoint.dims.n_audio_layer, checkpoint.dims.n_text_layer)
    except Exception as e:  # noqa: BLE001 - any unreadable source: the int8 stages run instead
        logging.getLogger("tingxie").info(f"no bfloat16 encoder weights for {folder} ({e})")
        return None
    try:  # atomically: another process may be reading the folder
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".encoder-bf16.", delete=False) as f:
            pass
    except OSError:  # a read-only cache: made again by the next process
        return weights
    try:
        save_arrays(f.name, weights)
        os.replace(f.name, path)
    except OSError:  # a full disk
        Path(f.name).unlink(missing_ok=True)
    return weights


def linear_library() -> ctypes.CDLL | None:
    """The compiled product kernel where it was built and the CPU has AVX512-BF16 (its ``tiles`` attribute: whether
    it runs on AMX tiles here, the CPU having them and Linux granting them, else on AVX512-BF16 vectors)."""
    library = load_kernel("tingxie.ort._linear_bf16", REQUIRED_FLAGS)
    if library is None:
        return None
    library.tiles = tiles_ready(library)  # the attention kernel's own check (its library exports amx_ready too)
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    library.linear_bf16.argtypes = [pointer, integer, integer, integer, pointer, pointer, pointer, integer, pointer, pointer, integer,
                                    integer, pointer, integer, integer]
    library.linear_bf16.restype = integer
    library.linear_scratch_bytes.argtypes = [integer, integer]
    library.linear_scratch_bytes.restype = ctypes.c_size_t
    return library


def bf16_rows(rows: int, n: int) -> np.ndarray:
    """A zeroed buffer for a ``BF16_OUT`` product of ``rows`` x ``n``: rows rounded up to the kernel's blocks of 32."""
    return np.zeros((-(-rows // 32) * 32, n), np.uint16)


class Bf16Linear:
    """y = x @ W + bias through the kernel, W packed by ``pack_weight``; optionally x's rows through a LayerNorm first
    and GELU or an add into the outputs' old values after."""

    def __init__(self, library: ctypes.CDLL, threads: int = 0, tiles: bool | None = None):
        """``tiles``: AMX tiles or AVX512-BF16 vectors (default: tiles where ``linear_library`` found them)."""
        self._library, self.threads = library, threads or usable_cpus()
        self.tiles = library.tiles if tiles is None else tiles
        if self.tiles and not library.tiles:
            raise ValueError("this CPU or process has no AMX tiles")
        self._local = threading.local()  # each thread's scratch: streams of one server may encode at once

    def __call__(self, x: np.ndarray, packed: np.ndarray, n: int, outs: list[np.ndarray], bias: np.ndarray | None = None,
                 norm: tuple[np.ndarray, np.ndarray] | None = None, flags: int = 0, rows: int | None = None, k: int | None = None,
                 row_stride: int | None = None) -> None:
        """Writes column j of x @ W into ``outs[j // cols]`` (each C-contiguous float32: (rows, cols), or with ``HEADS``
        (cols / 64, rows, 64), with ``TRANSPOSED`` (cols, rows); with ``BF16_OUT`` one ``bf16_rows(rows, n)`` array, the
        next product's x). ``rows``, ``k``, ``row_stride``: x read as rows of k floats ``row_stride`` apart (default: x's
        own 2-D shape; a bfloat16 x is taken as ``BF16_OUT`` wrote it, with ``rows`` given)."""
        if x.dtype == np.uint16:
            flags |= BF16_IN
            if rows is None or x.shape != bf16_rows(rows, x.shape[-1]).shape or not x.flags.c_contiguous or norm is not None:
                raise ValueError("a bfloat16 x must be as BF16_OUT writes it, its rows given, and without a LayerNorm")
        rows = x.shape[0] if rows is None else rows
        k = x.shape[-1] if k is None else k
        row_stride = x.shape[-1] if row_stride is None else row_stride
        cols = n // len(outs)
        if not x.flags.c_contiguous or x.dtype not in (np.float32, np.uint16) or x.size < (rows - 1) * row_stride + k:
            raise ValueError("x must be C-contiguous float32 holding its rows")
        if packed.shape != (-(-n // 32) * 2, -(-k // 32) * 16, 16, 2) or packed.dtype != np.uint16:
            raise ValueError(f"packed weight {packed.shape} does not fit k {k}, n {n}")
        shape = (cols // D_HEAD, rows, D_HEAD) if flags & HEADS else (cols, rows) if flags & TRANSPOSED else (rows, cols)
        dtype = np.float32
        if flags & BF16_OUT:
            shape, dtype = bf16_rows(rows, n).shape, np.uint16
        if any(out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous for out in outs) or len(outs) * cols != n:
            raise ValueError(f"outs must be C-contiguous {np.dtype(dtype).name} {shape} arrays, n // cols of them")
        needed = self._library.linear_scratch_bytes(rows, k) + 64
        buffer = getattr(self._local, "scratch", None)
        if buffer is None or buffer.size < needed:
            buffer = self._local.scratch = np.empty(needed, np.uint8)
        scratch = buffer.ctypes.data + (-buffer.ctypes.data) % 64
        pointers = (ctypes.c_void_p * len(outs))(*(out.ctypes.data for out in outs))
        gamma, beta = (None, None) if norm is None else (norm[0].ctypes.data, norm[1].ctypes.data)
        if self._library.linear_bf16(x.ctypes.data, rows, k, row_stride, gamma, beta, packed.ctypes.data, n,
                                     None if bias is None else bias.ctypes.data, pointers, cols, flags, scratch, self.threads,
                                     int(self.tiles)):
            raise ValueError("the product kernel refused its arguments")


class Bf16Encoder:
    """mel (audio, n_mels, 3000) -> each decoder layer's cross K (audio, head, frames, d_head) and V, transposed
    (audio, head, d_head, frames): the same contract as ``encoder.StagedEncoder``."""

    takes_fewer_frames = True  # every part but the attention works frame by frame; the convolutions are cut exactly

    def __init__(self, weights: dict[str, np.ndarray], library: ctypes.CDLL, n_head: int, threads: int = 0):
        self.weights, self.n_head = weights, n_head
        self.n_state = weights["conv1_bias"].shape[0]
        self.n_layer = sum(name.endswith(".qkv") for name in weights)
        self.n_text_layer = weights["cross_values_bias"].shape[0] // self.n_state
        self.linear = Bf16Linear(library, threads)
        self.attention = Bf16Attention(bf16_library(), n_head, self.linear.threads, tiles=library.tiles)
        self.kind = "bfloat16 (AMX tiles)" if library.tiles else "bfloat16 (AVX512-BF16)"
        self._spare: list[dict[str, np.ndarray]] = []  # working arrays for the next window (``_buffers``)

    def run(self, mel: np.ndarray, frames: int | None = None) -> list[np.ndarray]:
        """``frames``: only the first this many frames after the convolutions (the attention sees only them)."""
        parts = [self._one(np.ascontiguousarray(mel[i], dtype=np.float32), frames) for i in range(mel.shape[0])]
        return [np.concatenate(arrays) for arrays in zip(*parts)] if len(parts) > 1 else parts[0]

    def _buffers(self, n_mels: int, length: int, t: int) -> dict[str, np.ndarray]:
        """A window's working arrays, kept from one window to the next (taken from ``self._spare``; a second thread
        encoding at once makes its own): fresh ones page-faulted ~40 MB per tiny.en window (~4-5 ms), where ONNX
        Runtime's stages keep theirs in its arena."""
        try:
            buffers = self._spare.pop()
            if buffers["x"].shape[0] == t and buffers["padded"].shape == (length + 2, n_mels):
                return buffers
        except IndexError:
            pass
        n = self.n_state
        buffers = {"padded": np.zeros((length + 2, n_mels), np.float32), "hidden": np.zeros((2 * t + 1, n), np.float32),
                   "mlp": bf16_rows(t, 4 * n), "attended": np.empty((1, t, n), np.float32)}  # zeros: the padding stays 0
        buffers.update({name: np.empty((t, n), np.float32) for name in ("x", "q", "k", "v")})
        return buffers

    def _one(self, mel: np.ndarray, frames: int | None) -> list[np.ndarray]:
        n_mels, length = mel.shape
        t = length // 2 if frames is None else min(frames, length // 2)
        buffers = self._buffers(n_mels, length, t)
        try:
            return self._layers(mel, t, buffers)
        finally:
            if len(self._spare) < 2:
                self._spare.append(buffers)

    def _layers(self, mel: np.ndarray, t: int, buffers: dict[str, np.ndarray]) -> list[np.ndarray]:
        w, n, linear = self.weights, self.n_state, self.linear
        n_mels = mel.shape[0]
        # conv1 (width 3, padding 1) as a product: row s of the frames-first mel, zero-padded, read 3 frames long
        padded, hidden, x, q, k, v, mlp = (buffers[name] for name in ("padded", "hidden", "x", "q", "k", "v", "mlp"))
        padded[1:-1] = mel.T
        # conv1's output after one zero frame (conv2's padding)
        linear(padded, w["conv1"], n, [hidden[1:]], w["conv1_bias"], flags=GELU, rows=2 * t, k=3 * n_mels, row_stride=n_mels)
        # conv2 (stride 2): output s reads conv1's frames 2s-1 .. 2s+1, 3 rows of `hidden` from row 2s
        x[:] = w["positions"][:t]
        linear(hidden, w["conv2"], n, [x], w["conv2_bias"], flags=GELU | ACCUMULATE, rows=t, k=3 * n, row_stride=2 * n)
        for i in range(self.n_layer):
            linear(x, w[f"{i}.qkv"], 3 * n, [q, k, v], w[f"{i}.qkv_bias"], norm=(w[f"{i}.attn_ln_w"], w[f"{i}.attn_ln_b"]))
            attended = self.attention(q[None], k[None], v[None], out=buffers["attended"])[0]
            linear(attended, w[f"{i}.out"], n, [x], w[f"{i}.out_bias"], flags=ACCUMULATE)
            linear(x, w[f"{i}.fc1"], 4 * n, [mlp], w[f"{i}.fc1_bias"], norm=(w[f"{i}.mlp_ln_w"], w[f"{i}.mlp_ln_b"]), flags=GELU | BF16_OUT)
            linear(mlp, w[f"{i}.fc2"], n, [x], w[f"{i}.fc2_bias"], flags=ACCUMULATE, rows=t)
        # the decoder's layouts written by the kernel: keys (head, frames, 64), values (head * 64, frames)
        layers, norm = self.n_text_layer, (w["ln_post_w"], w["ln_post_b"])
        keys = [np.empty((self.n_head, t, D_HEAD), np.float32) for _ in range(layers)]
        values = [np.empty((n, t), np.float32) for _ in range(layers)]
        linear(x, w["cross_keys"], layers * n, keys, norm=norm, flags=HEADS)
        linear(x, w["cross_values"], layers * n, values, w["cross_values_bias"], norm=norm, flags=TRANSPOSED)
        return [key[None] for key in keys] + [value.reshape(self.n_head, D_HEAD, t)[None] for value in values]


def load_bf16_encoder(folder: Path, n_head: int, n_state: int, threads: int = 0) -> Bf16Encoder | None:
    """The bfloat16 encoder where the kernels are built, the CPU has AVX512-BF16 (AMX tiles or not) and the folder's
    weights can be had; else None."""
    if n_state != n_head * D_HEAD or bf16_library() is None:
        return None
    library = linear_library()
    if library is None:
        return None
    weights = folder_weights(folder)
    return None if weights is None else Bf16Encoder(weights, library, n_head, threads)
