"""Save a fine-tuned model as a Hugging Face Whisper folder, which ``tingxie.load_model(DIR)`` reads.

``model.safetensors`` holds the weights under Hugging Face's names, ``config.json`` the head counts
and sizes, and ``generation_config.json`` the alignment heads (for word timestamps), as the
Hugging Face loader in ``tingxie.weights.huggingface`` expects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..weights.checkpoint import ModelDimensions
from ..weights.huggingface import _LAYER_PARTS, _TOP

_PARTS_TO_HF = {ours: theirs for theirs, ours in _LAYER_PARTS.items()}
_TOP_TO_HF = {ours: theirs for theirs, ours in _TOP.items()}


def huggingface_name(name: str) -> str:
    """The Hugging Face name of one of our (OpenAI) parameter names."""
    if name in _TOP_TO_HF:
        return "model." + _TOP_TO_HF[name]
    side, blocks, index, rest = name.split(".", 3)
    part, kind = rest.rsplit(".", 1)
    if blocks != "blocks" or part not in _PARTS_TO_HF:
        raise ValueError(f"not a Whisper parameter name: {name!r}")
    return f"model.{side}.layers.{index}.{_PARTS_TO_HF[part]}.{kind}"


def huggingface_config(dims: ModelDimensions) -> dict:
    """The config.json fields of a Whisper model of these sizes."""
    return {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "num_mel_bins": dims.n_mels,
        "max_source_positions": dims.n_audio_ctx,
        "d_model": dims.n_audio_state,
        "encoder_attention_heads": dims.n_audio_head,
        "encoder_layers": dims.n_audio_layer,
        "encoder_ffn_dim": 4 * dims.n_audio_state,
        "vocab_size": dims.n_vocab,
        "max_target_positions": dims.n_text_ctx,
        "decoder_attention_heads": dims.n_text_head,
        "decoder_layers": dims.n_text_layer,
        "decoder_ffn_dim": 4 * dims.n_text_state,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_model(state: dict[str, torch.Tensor], dims: ModelDimensions, alignment_heads: list[tuple[int, int]] | None,
               folder: Path, *, dtype: torch.dtype = torch.float32, extra: dict | None = None) -> Path:
    """Write the canonical ``state`` (our parameter names) as a Hugging Face folder; returns the weights file."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # the encoder's sinusoidal positions are fixed, not learned: a Hugging Face file still carries them
    weights = {huggingface_name(k): v.detach().to("cpu", dtype).contiguous() for k, v in state.items()}
    _write_json(folder / "config.json", huggingface_config(dims))
    heads = [list(h) for h in alignment_heads] if alignment_heads else None
    _write_json(folder / "generation_config.json", {"alignment_heads": heads, **(extra or {})})
    target = folder / "model.safetensors"
    tmp = folder / ".model.safetensors.part"
    save_file(weights, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, target)
    return target
