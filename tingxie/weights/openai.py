"""OpenAI's official ``.pt`` files: a torch.save'd ``{"dims": {...}, "model_state_dict": {...}}``.

Their parameter names are already canonical. The alignment heads are not in the file (the registry
knows them by model name).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError
from .canonical import check_state_dict, dims_from_state_dict
from .checkpoint import Checkpoint


def torch_load(path: Path) -> object:
    """``torch.load`` on the CPU without running pickled code, memory-mapped where the file allows."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        # files in the pre-1.6 (non-zip) serialization cannot be memory-mapped; read them whole
        if "mmap" not in str(e):
            raise
    return torch.load(path, map_location="cpu", weights_only=True)


def load_openai_pt(path: Path) -> Checkpoint:
    """Load an official Whisper ``.pt`` checkpoint (or any file of that layout)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        data = torch_load(path)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is truncated or not a Whisper checkpoint: {e}") from e
    if not isinstance(data, dict) or "model_state_dict" not in data or "dims" not in data:
        raise CheckpointError(f"{path} is not a Whisper checkpoint: expected a dict with 'dims' and 'model_state_dict'")
    state = data["model_state_dict"]
    declared = data["dims"]
    if not isinstance(state, dict) or not isinstance(declared, dict):
        raise CheckpointError(f"{path} is not a Whisper checkpoint: 'dims' and 'model_state_dict' must be dicts")
    # shapes are the truth; the declared dims only supply what no shape shows (the head counts)
    dims = dims_from_state_dict(
        state, n_audio_head=declared.get("n_audio_head"), n_text_head=declared.get("n_text_head"), source=str(path)
    )
    check_state_dict(state, dims, str(path))
    return Checkpoint(dims=dims, state_dict=dict(state), source=path, format="openai")
