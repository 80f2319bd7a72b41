"""A checkpoint as float32 NumPy arrays with OpenAI's parameter names, loaded without PyTorch where the format allows.

Every supported format is read with NumPy alone: CTranslate2 folders (the embedded ``tiny.en``, ``base``), PyTorch zip
files (OpenAI's ``.pt`` downloads, ``pytorch_model.bin``) and Hugging Face safetensors.
The ONNX Runtime path binds these arrays into the package's weight-free graphs (``tingxie.ort.graphs``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from .checkpoint import ModelDimensions


@dataclass
class ArrayCheckpoint:
    """Canonical float32 weights (``encoder.blocks.0.attn.query.weight`` ...) and what the runtime needs beside them."""

    dims: ModelDimensions
    state: dict[str, np.ndarray]
    alignment_heads: list[tuple[int, int]] | None
    source: Path


def load_array_checkpoint(name_or_path: str | Path, *, cache_dir: str | os.PathLike | None = None, download: bool = True) -> ArrayCheckpoint:
    """The checkpoint of an official name or a path (found as ``load_checkpoint`` finds it) as float32 arrays."""
    from . import OFFICIAL_MODELS, detect_format, resolve_model
    from .registry import heads_for_dims

    path = resolve_model(name_or_path, cache_dir=cache_dir, download=download)
    name = str(name_or_path)
    fmt = detect_format(path)
    if fmt == "ctranslate2":
        from .ct2_numpy import convert_variables, model_bin_path, read_alignment_heads, read_model_bin

        file = model_bin_path(path)
        dims, state = convert_variables(read_model_bin(file))
        heads = read_alignment_heads(file)
    elif fmt == "openai":
        dims, state = _openai_arrays(path)
        heads = None
    else:
        from .huggingface import load_file_arrays, read_huggingface

        checkpoint = read_huggingface(path, load_file_arrays)
        dims, heads = checkpoint.dims, checkpoint.alignment_heads
        state = {key: np.require(array, dtype=np.float32, requirements="C") for key, array in checkpoint.state_dict.items()}
    if heads is None:
        stem = path.name.removesuffix(".pt") if path.is_file() else path.name
        heads = heads_for_dims(dims, name if name in OFFICIAL_MODELS else stem)
    return ArrayCheckpoint(dims, state, heads, path)


def _openai_arrays(path: Path) -> tuple[ModelDimensions, dict[str, np.ndarray]]:
    """An OpenAI ``.pt`` file's dims and float32 state, read as ``load_openai_pt`` reads it, without PyTorch."""
    from .canonical import check_state_dict, dims_from_state_dict
    from .pt_numpy import load_torch_zip

    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    data = load_torch_zip(path)
    if not isinstance(data, dict) or not isinstance(data.get("model_state_dict"), dict) or not isinstance(data.get("dims"), dict):
        raise CheckpointError(f"{path} is not a Whisper checkpoint: expected a dict with 'dims' and 'model_state_dict'")
    state, declared = data["model_state_dict"], data["dims"]
    dims = dims_from_state_dict(state, n_audio_head=declared.get("n_audio_head"), n_text_head=declared.get("n_text_head"), source=str(path))
    check_state_dict(state, dims, str(path))
    return dims, {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in state.items()}
