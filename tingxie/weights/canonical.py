"""The canonical (OpenAI) parameter names, and the model dimensions read off a canonical state dict."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # shapes only: the checks run on NumPy arrays too (the ONNX Runtime path)
    import torch

from ..errors import CheckpointError
from .checkpoint import ModelDimensions

# Every released Whisper model has 64-dimensional attention heads; the head count is not visible in
# any tensor shape, so it is the fallback where a checkpoint does not state it.
HEAD_DIM = 64

_LINEAR = ("weight", "bias")


def _attention_names(prefix: str) -> list[str]:
    names = [f"{prefix}.query.weight", f"{prefix}.query.bias", f"{prefix}.key.weight"]
    names += [f"{prefix}.value.{p}" for p in _LINEAR] + [f"{prefix}.out.{p}" for p in _LINEAR]
    return names


def _block_names(prefix: str, cross: bool) -> list[str]:
    names = _attention_names(f"{prefix}.attn") + [f"{prefix}.attn_ln.{p}" for p in _LINEAR]
    if cross:
        names += _attention_names(f"{prefix}.cross_attn") + [f"{prefix}.cross_attn_ln.{p}" for p in _LINEAR]
    for part in ("mlp.0", "mlp.2", "mlp_ln"):
        names += [f"{prefix}.{part}.{p}" for p in _LINEAR]
    return names


def canonical_names(n_audio_layer: int, n_text_layer: int) -> list[str]:
    """Every parameter name a Whisper state dict with these layer counts holds, in model order."""
    names = [f"encoder.{conv}.{p}" for conv in ("conv1", "conv2") for p in _LINEAR]
    names.append("encoder.positional_embedding")
    for i in range(n_audio_layer):
        names += _block_names(f"encoder.blocks.{i}", cross=False)
    names += [f"encoder.ln_post.{p}" for p in _LINEAR]
    names += ["decoder.token_embedding.weight", "decoder.positional_embedding"]
    for i in range(n_text_layer):
        names += _block_names(f"decoder.blocks.{i}", cross=True)
    names += [f"decoder.ln.{p}" for p in _LINEAR]
    return names


def _count_blocks(state: Mapping[str, torch.Tensor], side: str) -> int:
    pattern = re.compile(rf"{side}\.blocks\.(\d+)\.")
    indices = {int(m.group(1)) for name in state if (m := pattern.match(name))}
    return max(indices) + 1 if indices else 0


def _shape(state: Mapping[str, torch.Tensor], name: str, source: str) -> torch.Size:
    if name not in state:
        raise CheckpointError(f"{source} lacks the parameter {name!r}: not a Whisper checkpoint")
    return state[name].shape


def dims_from_state_dict(
    state: Mapping[str, torch.Tensor], *, n_audio_head: int | None = None, n_text_head: int | None = None, source: str = "checkpoint"
) -> ModelDimensions:
    """Model dimensions from tensor shapes; head counts from the caller, else ``state // 64``."""
    conv1 = _shape(state, "encoder.conv1.weight", source)
    audio_pos = _shape(state, "encoder.positional_embedding", source)
    tokens = _shape(state, "decoder.token_embedding.weight", source)
    text_pos = _shape(state, "decoder.positional_embedding", source)
    return ModelDimensions(
        n_mels=int(conv1[1]),
        n_audio_ctx=int(audio_pos[0]),
        n_audio_state=int(audio_pos[1]),
        n_audio_head=int(n_audio_head or max(1, audio_pos[1] // HEAD_DIM)),
        n_audio_layer=_count_blocks(state, "encoder"),
        n_vocab=int(tokens[0]),
        n_text_ctx=int(text_pos[0]),
        n_text_state=int(text_pos[1]),
        n_text_head=int(n_text_head or max(1, text_pos[1] // HEAD_DIM)),
        n_text_layer=_count_blocks(state, "decoder"),
    )


def expected_shape(name: str, dims: ModelDimensions) -> tuple[int, ...]:
    """The shape of the canonical parameter ``name`` in a model of ``dims``."""
    state = dims.n_audio_state if name.startswith("encoder.") else dims.n_text_state
    fixed = {
        "encoder.conv1.weight": (state, dims.n_mels, 3),
        "encoder.conv2.weight": (state, state, 3),
        "encoder.positional_embedding": (dims.n_audio_ctx, state),
        "decoder.token_embedding.weight": (dims.n_vocab, state),
        "decoder.positional_embedding": (dims.n_text_ctx, state),
    }
    if name in fixed:
        return fixed[name]
    # the MLP is four times as wide as the residual stream in every Whisper model
    if ".mlp.0." in name:
        return (4 * state, state) if name.endswith("weight") else (4 * state,)
    if ".mlp.2." in name:
        return (state, 4 * state) if name.endswith("weight") else (state,)
    if name.endswith(".weight") and ("attn." in name) and not name.split(".")[-2].endswith("_ln"):
        return (state, state)
    return (state,)


def check_state_dict(state: Mapping[str, torch.Tensor], dims: ModelDimensions, source: str = "checkpoint") -> None:
    """Raise CheckpointError unless ``state`` holds exactly the parameters a model of ``dims`` needs."""
    expected = canonical_names(dims.n_audio_layer, dims.n_text_layer)
    missing = [n for n in expected if n not in state]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(f"{source} lacks the parameters {', '.join(missing[:3])}{more}: not a complete Whisper checkpoint")
    extra = sorted(set(state) - set(expected))
    if extra:
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        raise CheckpointError(f"{source} has unexpected parameters {', '.join(extra[:3])}{more}: not a Whisper checkpoint")
    for name in expected:
        want = expected_shape(name, dims)
        if tuple(state[name].shape) != want:
            raise CheckpointError(f"{source}: {name} has the shape {tuple(state[name].shape)}, expected {want}")
    if dims.n_audio_state % dims.n_audio_head or dims.n_text_state % dims.n_text_head:
        raise CheckpointError(f"{source}: the head counts ({dims.n_audio_head}, {dims.n_text_head}) do not divide the widths")
    if dims.n_audio_layer == 0 or dims.n_text_layer == 0:
        raise CheckpointError(f"{source} has no encoder or no decoder blocks")
