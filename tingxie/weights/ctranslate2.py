"""CTranslate2 ``model.bin`` (WhisperSpec) -> canonical PyTorch state dict.

The reading and the renaming are NumPy's (``ct2_numpy``: the ONNX Runtime path loads the same file without
PyTorch); here the float32 arrays become tensors of the asked dtype.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import Checkpoint
from .ct2_numpy import convert_variables, model_bin_path, read_alignment_heads, read_model_bin


def load_ctranslate2(model_dir: Path, *, dtype: torch.dtype | None = None) -> Checkpoint:
    """Load ``model_dir/model.bin`` (+ ``config.json`` for the alignment heads)."""
    path = model_bin_path(model_dir)
    dims, arrays = convert_variables(read_model_bin(path))
    state = {name: torch.from_numpy(array).to(dtype or torch.float32) for name, array in arrays.items()}
    return Checkpoint(dims=dims, state_dict=state, alignment_heads=read_alignment_heads(path), source=path, format="ctranslate2")
