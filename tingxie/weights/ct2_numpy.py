"""CTranslate2 ``model.bin`` (WhisperSpec) -> canonical float32 NumPy arrays, without PyTorch.

The file is a flat list of named tensors (binary version 5 or 6). CTranslate2 fuses the self-attention
query/key/value into one ``linear_0`` and the cross-attention key/value into ``linear_1``; the
fused key bias is all zeros because Whisper's key projection has none.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from .checkpoint import ModelDimensions

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class _Reader:
    def __init__(self, buf: memoryview, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise CheckpointError(f"{self.path} is truncated (needs {self.pos + n} bytes, has {len(self.buf)})")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return bytes(self.take(self.unpack("<H")))[:-1].decode("utf-8")


def _bfloat16_to_float32(raw: memoryview) -> np.ndarray:
    """bfloat16 is the upper half of a float32: widening is exact."""
    return (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def read_model_bin(path: Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model.bin as NumPy arrays (bfloat16 widened to float32; aliases resolved)."""
    try:
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    r = _Reader(memoryview(data), path)
    version = r.unpack("<I")
    if not 5 <= version <= 6:
        raise CheckpointError(f"{path}: unsupported CTranslate2 binary version {version}")
    spec = r.string()
    r.unpack("<I")  # spec revision
    if spec != "WhisperSpec":
        raise CheckpointError(f"{path} is a CTranslate2 {spec!r} model, not Whisper")
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.unpack("<I")):
        name = r.string()
        shape = [r.unpack("<I") for _ in range(r.unpack("<B"))]
        dtype = _DTYPES.get(r.unpack("<B"))
        raw = r.take(r.unpack("<I"))
        if dtype is None:
            raise CheckpointError(f"{path}: variable {name} has an unknown data type")
        array = _bfloat16_to_float32(raw) if dtype == "bfloat16" else np.frombuffer(raw, dtype=dtype).copy()
        variables[name] = array.reshape(shape)
    for _ in range(r.unpack("<I")):
        alias, target = r.string(), r.string()
        variables[alias] = variables[target]
    return variables


def _dequantize(v: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    w = v[prefix + "/weight"]
    scale = v.get(prefix + "/weight_scale")
    if w.dtype == np.int8 and scale is not None:
        # int8 rows carry one float scale each: w_float = w_int8 / scale
        return w.astype(np.float32) / scale.astype(np.float32).reshape(-1, *[1] * (w.ndim - 1))
    return w.astype(np.float32)


def _float(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32)


def _linear(v, prefix, out, name, bias=True):
    out[name + ".weight"] = _dequantize(v, prefix)
    if bias:
        out[name + ".bias"] = _float(v[prefix + "/bias"])


def _layer_norm(v, prefix, out, name):
    out[name + ".weight"] = _float(v[prefix + "/gamma"])
    out[name + ".bias"] = _float(v[prefix + "/beta"])


def _split(v, prefix, parts: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    # contiguous copies: each part becomes a parameter of its own
    weights = [np.ascontiguousarray(w) for w in np.split(_dequantize(v, prefix), parts, axis=0)]
    return weights, [np.ascontiguousarray(b) for b in np.split(_float(v[prefix + "/bias"]), parts, axis=0)]


def _attention(v, prefix, out, name, fused_qkv: bool):
    if fused_qkv:
        (wq, wk, wv), (bq, _, bv) = _split(v, prefix + "/linear_0", 3)
        out[name + ".query.weight"], out[name + ".query.bias"] = wq, bq
        out_proj = prefix + "/linear_1"
    else:
        _linear(v, prefix + "/linear_0", out, name + ".query")
        (wk, wv), (_, bv) = _split(v, prefix + "/linear_1", 2)
        out_proj = prefix + "/linear_2"
    out[name + ".key.weight"] = wk
    out[name + ".value.weight"], out[name + ".value.bias"] = wv, bv
    _linear(v, out_proj, out, name + ".out")


def _block(v, src, dst, out, cross: bool):
    _layer_norm(v, f"{src}/self_attention/layer_norm", out, f"{dst}.attn_ln")
    _attention(v, f"{src}/self_attention", out, f"{dst}.attn", fused_qkv=True)
    if cross:
        _layer_norm(v, f"{src}/attention/layer_norm", out, f"{dst}.cross_attn_ln")
        _attention(v, f"{src}/attention", out, f"{dst}.cross_attn", fused_qkv=False)
    _layer_norm(v, f"{src}/ffn/layer_norm", out, f"{dst}.mlp_ln")
    _linear(v, f"{src}/ffn/linear_0", out, f"{dst}.mlp.0")
    _linear(v, f"{src}/ffn/linear_1", out, f"{dst}.mlp.2")


def _count_layers(v: dict, side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/bias" in v:
        n += 1
    return n


def convert_variables(v: dict[str, np.ndarray]) -> tuple[ModelDimensions, dict[str, np.ndarray]]:
    """Map CTranslate2 variable names to OpenAI's (float32 arrays) and derive the model dimensions."""
    try:
        n_audio_layer, n_text_layer = _count_layers(v, "encoder"), _count_layers(v, "decoder")
        out: dict[str, np.ndarray] = {}
        _linear(v, "encoder/conv1", out, "encoder.conv1")
        _linear(v, "encoder/conv2", out, "encoder.conv2")
        out["encoder.positional_embedding"] = _float(v["encoder/position_encodings/encodings"])
        for i in range(n_audio_layer):
            _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", out, cross=False)
        _layer_norm(v, "encoder/layer_norm", out, "encoder.ln_post")
        out["decoder.token_embedding.weight"] = _dequantize(v, "decoder/embeddings")
        out["decoder.positional_embedding"] = _float(v["decoder/position_encodings/encodings"])
        for i in range(n_text_layer):
            _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", out, cross=True)
        _layer_norm(v, "decoder/layer_norm", out, "decoder.ln")
        dims = ModelDimensions(
            n_mels=out["encoder.conv1.weight"].shape[1],
            n_audio_ctx=out["encoder.positional_embedding"].shape[0],
            n_audio_state=out["encoder.positional_embedding"].shape[1],
            n_audio_head=int(v["encoder/num_heads"].item()),
            n_audio_layer=n_audio_layer,
            n_vocab=out["decoder.token_embedding.weight"].shape[0],
            n_text_ctx=out["decoder.positional_embedding"].shape[0],
            n_text_state=out["decoder.positional_embedding"].shape[1],
            n_text_head=int(v["decoder/num_heads"].item()),
            n_text_layer=n_text_layer,
        )
    except KeyError as e:
        raise CheckpointError(f"CTranslate2 checkpoint lacks the variable {e.args[0]!r}: not a Whisper model") from e
    return dims, out


def read_alignment_heads(path: Path) -> list[tuple[int, int]] | None:
    """The alignment heads of ``config.json`` beside a model.bin, or None."""
    config = path.parent / "config.json"
    if not config.is_file():
        return None
    cfg = json.loads(config.read_text(encoding="utf-8"))
    if not cfg.get("alignment_heads"):
        return None
    return [(int(layer), int(head)) for layer, head in cfg["alignment_heads"]]


def model_bin_path(model_dir: Path) -> Path:
    """``model_dir/model.bin`` (or the file itself); CheckpointError where there is none."""
    model_dir = Path(model_dir)
    path = model_dir / "model.bin" if model_dir.is_dir() else model_dir
    if not path.is_file():
        raise CheckpointError(f"no CTranslate2 model.bin at {path}")
    return path
