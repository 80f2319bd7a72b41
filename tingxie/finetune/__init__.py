"""Fine-tuning (full or LoRA) on the user's own recordings: ``tingxie finetune`` and :func:`finetune`.

Light at import: the CLI module imports this package; torch and peft load when a run starts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune"]


def __getattr__(name: str) -> Any:
    if name == "FinetuneConfig":
        from .config import FinetuneConfig

        return FinetuneConfig
    if name in ("finetune", "FinetuneResult"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
