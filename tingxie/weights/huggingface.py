"""Hugging Face ``WhisperForConditionalGeneration`` / ``WhisperModel`` checkpoints -> canonical names.

A checkpoint is a directory (or one of its files) holding ``model.safetensors``, ``pytorch_model.bin``
or shards listed by ``model.safetensors.index.json`` / ``pytorch_model.bin.index.json``. Sizes come
from tensor shapes, head counts from ``config.json`` where present, alignment heads from
``generation_config.json``. Distilled models (fewer decoder layers) need nothing special.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the format is detected (WEIGHT_FILES) and read as NumPy arrays without PyTorch
    import torch

from ..errors import CheckpointError
from .canonical import check_state_dict, dims_from_state_dict
from .checkpoint import Checkpoint

# Weight files in the order they are looked for in a directory.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

_LAYER_PARTS = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
}

_TOP = {
    "encoder.conv1.weight": "encoder.conv1.weight",
    "encoder.conv1.bias": "encoder.conv1.bias",
    "encoder.conv2.weight": "encoder.conv2.weight",
    "encoder.conv2.bias": "encoder.conv2.bias",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "encoder.layer_norm.weight": "encoder.ln_post.weight",
    "encoder.layer_norm.bias": "encoder.ln_post.bias",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.layer_norm.weight": "decoder.ln.weight",
    "decoder.layer_norm.bias": "decoder.ln.bias",
}

_LAYER = re.compile(r"(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")


def canonical_name(hf_name: str) -> str | None:
    """The OpenAI name of a Hugging Face parameter; None for one to drop (the tied output projection,
    the always-zero key bias some exports carry). Raises CheckpointError for a name not of Whisper."""
    name = hf_name.removeprefix("model.")
    if name == "proj_out.weight":
        return None
    if name in _TOP:
        return _TOP[name]
    m = _LAYER.fullmatch(name)
    if m and m.group(3) in _LAYER_PARTS:
        side, index, part, kind = m.groups()
        if part.endswith("k_proj") and kind == "bias":
            return None
        return f"{side}.blocks.{index}.{_LAYER_PARTS[part]}.{kind}"
    raise CheckpointError(f"unexpected parameter {hf_name!r}: not a Hugging Face Whisper checkpoint")


def to_canonical(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face Whisper state dict to OpenAI's names, dropping tied/zero parameters."""
    out: dict[str, torch.Tensor] = {}
    for hf_name, tensor in hf_state.items():
        name = canonical_name(hf_name)
        if name is not None:
            out[name] = tensor
    # the output projection is tied to the token embedding; a file may keep either copy
    if "decoder.token_embedding.weight" not in out and "proj_out.weight" in hf_state:
        out["decoder.token_embedding.weight"] = hf_state["proj_out.weight"]
    return out


def _weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds none of {', '.join(WEIGHT_FILES)}: not a Hugging Face checkpoint")
    raise CheckpointError(f"no Hugging Face checkpoint at {path}")


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        if path.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        from .openai import torch_load

        data = torch_load(path)
    except Exception as e:  # safetensors raises its own error types; any failure here means a bad file
        raise CheckpointError(f"{path} is truncated or not a Whisper checkpoint: {e}") from e
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors: not a Hugging Face checkpoint")
    return data


def load_file_arrays(path: Path) -> dict[str, np.ndarray]:
    """One weight file as NumPy arrays, without PyTorch (safetensors' NumPy reader; ``pytorch_model.bin`` through
    ``pt_numpy``)."""
    try:
        if path.name.endswith(".safetensors"):
            from safetensors.numpy import load_file

            return load_file(str(path))
        from .pt_numpy import load_torch_zip

        data = load_torch_zip(path)
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types; any failure here means a bad file
        raise CheckpointError(f"{path} is truncated or not a Whisper checkpoint: {e}") from e
    if not isinstance(data, dict) or not all(isinstance(v, np.ndarray) for v in data.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors: not a Hugging Face checkpoint")
    return data


def _load_sharded(index: Path, read_file: Callable[[Path], dict]) -> dict:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index} is not a shard index (a JSON object with a 'weight_map'): {e}") from e
    state: dict = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index.parent / shard
        if not shard_path.is_file():
            raise CheckpointError(f"{index} lists the shard {shard}, which is missing")
        state.update(read_file(shard_path))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise CheckpointError(f"the shards of {index} lack {', '.join(missing[:3])}")
    return state


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    return data if isinstance(data, dict) else {}


def read_huggingface(path: Path, read_file: Callable[[Path], dict] = _load_file) -> Checkpoint:
    """A Hugging Face Whisper checkpoint from its directory or one of its weight/index files, its tensors as
    ``read_file`` gives them (PyTorch's by default; ``load_file_arrays``: NumPy's)."""
    path = Path(path)
    weights = _weights_file(path)
    if weights.name.endswith(".index.json"):
        hf_state = _load_sharded(weights, read_file)
    else:
        hf_state = read_file(weights)
    state = to_canonical(hf_state)
    config = _read_json(weights.parent / "config.json")
    dims = dims_from_state_dict(
        state, n_audio_head=config.get("encoder_attention_heads"), n_text_head=config.get("decoder_attention_heads"), source=str(weights)
    )
    check_state_dict(state, dims, str(weights))
    generation = _read_json(weights.parent / "generation_config.json")
    heads = generation.get("alignment_heads")
    alignment = [(int(layer), int(head)) for layer, head in heads] if heads else None
    source = path if path.is_dir() else weights
    return Checkpoint(dims=dims, state_dict=state, alignment_heads=alignment, source=source, format="huggingface")


def load_huggingface(path: Path) -> Checkpoint:
    """Load a Hugging Face Whisper checkpoint from its directory or one of its weight/index files."""
    return read_huggingface(path)
