"""Weight-space ensembling of a fine-tuned model with its base (WiSE-FT, arXiv:2109.01903).

``base + weight * (tuned - base)``: weight 1 is the fine-tuned model, 0 the base. A weight between
keeps most of what fine-tuning learnt about the domain while giving back the general accuracy that
training on a small domain set wears away, with no further training.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import OptionError


def mix_states(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], weight: float) -> dict[str, torch.Tensor]:
    """``base + weight * (tuned - base)`` for every parameter, in float32."""
    if set(base) != set(tuned):
        missing = sorted(set(base) ^ set(tuned))[:5]
        raise OptionError(f"the two models have different parameters (e.g. {', '.join(missing)}): mix a model with its own base")
    mixed = {}
    for name, tuned_value in tuned.items():
        base_value = base[name].float()
        if base_value.shape != tuned_value.shape:
            raise OptionError(f"parameter {name} has shape {tuple(base_value.shape)} in the base, {tuple(tuned_value.shape)} fine-tuned")
        mixed[name] = base_value + weight * (tuned_value.float() - base_value)
    return mixed


def mix_models(base: str, tuned: str, weight: float, out: str | Path) -> Path:
    """Write ``base + weight * (tuned - base)`` as a model folder that ``--model OUT`` loads; returns the folder."""
    from ..weights import load_checkpoint
    from .export import save_model

    if not 0.0 <= weight <= 1.0:
        raise OptionError(f"weight must be in [0, 1] (0 = the base, 1 = the fine-tuned model), got {weight}")
    base_checkpoint, tuned_checkpoint = load_checkpoint(base), load_checkpoint(tuned)
    if base_checkpoint.dims != tuned_checkpoint.dims:
        raise OptionError(f"{tuned} is not a fine-tuned {base}: their dimensions differ")
    state = mix_states(base_checkpoint.state_dict, tuned_checkpoint.state_dict, weight)
    heads = tuned_checkpoint.alignment_heads or base_checkpoint.alignment_heads
    extra = {"tingxie_mix": {"base_model": base, "tuned_model": str(tuned), "weight": weight}}
    return save_model(state, tuned_checkpoint.dims, heads, Path(out), extra=extra).parent
