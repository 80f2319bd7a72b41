"""Low-rank adapters (LoRA, via ``peft``) on the model's linear layers, and merging them back in.

peft wraps each chosen ``nn.Linear`` of our own module in place, so the model's methods keep
working; merging folds ``scale * B @ A`` into each base weight and puts the plain layer back, so a
saved model has exactly the original parameter names and loads like any checkpoint.
"""

from __future__ import annotations

import re

from torch import nn

from ..errors import OptionError
from .config import FinetuneConfig

LINEAR_NAMES = ("query", "key", "value", "out", "mlp.0", "mlp.2")


def target_pattern(targets: list[str], decoder_only: bool) -> str:
    """A regular expression for the full names of the layers to adapt (peft matches it whole)."""
    unknown = [t for t in targets if t not in LINEAR_NAMES]
    if unknown or not targets:
        raise OptionError(f"lora_targets must name some of {', '.join(LINEAR_NAMES)}, not {', '.join(unknown) or 'nothing'}")
    side = "decoder" if decoder_only else "(?:encoder|decoder)"
    names = "|".join(re.escape(t) for t in targets)
    return rf"{side}\.blocks\.\d+\.(?:(?:attn|cross_attn)\.)?(?:{names})"


def add_lora(model: nn.Module, config: FinetuneConfig) -> nn.Module:
    """Wrap the target layers with adapters; afterwards only the adapters' parameters require grad."""
    from peft import LoraConfig, inject_adapter_in_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target_pattern(config.target_modules, config.freeze_encoder),
        bias="none",
    )
    return inject_adapter_in_model(lora, model)


def lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and put the base layer back in the adapter's place."""
    for name, module in lora_layers(model):
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return model
