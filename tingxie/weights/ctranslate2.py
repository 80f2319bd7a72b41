"""CTranslate2 ``model.bin`` (WhisperSpec) -> canonical state dict.

The file is a flat list of named tensors (binary version 6). CTranslate2 fuses the self-attention
query/key/value into one ``linear_0`` and the cross-attention key/value into ``linear_1``; the
fused key bias is all zeros because Whisper's key projection has none.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from .checkpoint import Checkpoint, ModelDimensions

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


def read_model_bin(path: Path) -> dict[str, torch.Tensor]:
    """All variables of a CTranslate2 model.bin as CPU tensors (aliases resolved)."""
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
    variables: dict[str, torch.Tensor] = {}
    for _ in range(r.unpack("<I")):
        name = r.string()
        shape = [r.unpack("<I") for _ in range(r.unpack("<B"))]
        dtype = _DTYPES.get(r.unpack("<B"))
        raw = r.take(r.unpack("<I"))
        if dtype is None:
            raise CheckpointError(f"{path}: variable {name} has an unknown data type")
        if dtype == "bfloat16":
            t = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=dtype).copy())
        variables[name] = t.reshape(shape)
    for _ in range(r.unpack("<I")):
        alias, target = r.string(), r.string()
        variables[alias] = variables[target]
    return variables


def _dequantize(v: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype) -> torch.Tensor:
    w = v[prefix + "/weight"]
    scale = v.get(prefix + "/weight_scale")
    if w.dtype == torch.int8 and scale is not None:
        # int8 rows carry one float scale each: w_float = w_int8 / scale
        return (w.to(torch.float32) / scale.to(torch.float32).reshape(-1, *[1] * (w.dim() - 1))).to(dtype)
    return w.to(dtype)


def _linear(v, prefix, dtype, out, name, bias=True):
    out[name + ".weight"] = _dequantize(v, prefix, dtype)
    if bias:
        out[name + ".bias"] = v[prefix + "/bias"].to(dtype)


def _layer_norm(v, prefix, dtype, out, name):
    out[name + ".weight"] = v[prefix + "/gamma"].to(dtype)
    out[name + ".bias"] = v[prefix + "/beta"].to(dtype)


def _split(v, prefix, dtype, parts: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return (list(_dequantize(v, prefix, dtype).chunk(parts, dim=0)), list(v[prefix + "/bias"].to(dtype).chunk(parts, dim=0)))


def _attention(v, prefix, dtype, out, name, fused_qkv: bool):
    if fused_qkv:
        (wq, wk, wv), (bq, _, bv) = _split(v, prefix + "/linear_0", dtype, 3)
        out_proj = prefix + "/linear_1"
    else:
        _linear(v, prefix + "/linear_0", dtype, out, name + ".query")
        (wk, wv), (_, bv) = _split(v, prefix + "/linear_1", dtype, 2)
        wq = bq = None
        out_proj = prefix + "/linear_2"
    if wq is not None:
        out[name + ".query.weight"], out[name + ".query.bias"] = wq, bq
    out[name + ".key.weight"] = wk
    out[name + ".value.weight"], out[name + ".value.bias"] = wv, bv
    _linear(v, out_proj, dtype, out, name + ".out")


def _block(v, src, dst, dtype, out, cross: bool):
    _layer_norm(v, f"{src}/self_attention/layer_norm", dtype, out, f"{dst}.attn_ln")
    _attention(v, f"{src}/self_attention", dtype, out, f"{dst}.attn", fused_qkv=True)
    if cross:
        _layer_norm(v, f"{src}/attention/layer_norm", dtype, out, f"{dst}.cross_attn_ln")
        _attention(v, f"{src}/attention", dtype, out, f"{dst}.cross_attn", fused_qkv=False)
    _layer_norm(v, f"{src}/ffn/layer_norm", dtype, out, f"{dst}.mlp_ln")
    _linear(v, f"{src}/ffn/linear_0", dtype, out, f"{dst}.mlp.0")
    _linear(v, f"{src}/ffn/linear_1", dtype, out, f"{dst}.mlp.2")


def _count_layers(v: dict, side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/bias" in v:
        n += 1
    return n


def convert_variables(v: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> tuple[ModelDimensions, dict]:
    """Map CTranslate2 variable names to OpenAI's and derive the model dimensions."""
    try:
        n_audio_layer, n_text_layer = _count_layers(v, "encoder"), _count_layers(v, "decoder")
        out: dict[str, torch.Tensor] = {}
        _linear(v, "encoder/conv1", dtype, out, "encoder.conv1")
        _linear(v, "encoder/conv2", dtype, out, "encoder.conv2")
        out["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"].to(dtype)
        for i in range(n_audio_layer):
            _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", dtype, out, cross=False)
        _layer_norm(v, "encoder/layer_norm", dtype, out, "encoder.ln_post")
        out["decoder.token_embedding.weight"] = _dequantize(v, "decoder/embeddings", dtype)
        out["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"].to(dtype)
        for i in range(n_text_layer):
            _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", dtype, out, cross=True)
        _layer_norm(v, "decoder/layer_norm", dtype, out, "decoder.ln")
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


def load_ctranslate2(model_dir: Path, *, dtype: torch.dtype | None = None) -> Checkpoint:
    """Load ``model_dir/model.bin`` (+ ``config.json`` for the alignment heads)."""
    model_dir = Path(model_dir)
    path = model_dir / "model.bin" if model_dir.is_dir() else model_dir
    if not path.is_file():
        raise CheckpointError(f"no CTranslate2 model.bin at {path}")
    variables = read_model_bin(path)
    dims, state = convert_variables(variables, dtype or torch.float32)
    heads = None
    config = path.parent / "config.json"
    if config.is_file():
        cfg = json.loads(config.read_text(encoding="utf-8"))
        if cfg.get("alignment_heads"):
            heads = [(int(layer), int(head)) for layer, head in cfg["alignment_heads"]]
    return Checkpoint(dims=dims, state_dict=state, alignment_heads=heads, source=path, format="ctranslate2")
