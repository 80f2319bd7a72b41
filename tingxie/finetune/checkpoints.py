"""Resumable training state: ``OUT/checkpoints/step-NNNNNNNN/state.pt``, written atomically.

A checkpoint holds the trainable parameters (the adapters for LoRA, everything for full
fine-tuning), the optimizer, scheduler and gradient-scaler states, the step and torch's random
state. The data order is a function of the seed and the step, so nothing else is needed to go on
exactly where the run stopped.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .config import FinetuneConfig

_NAME = re.compile(r"step-(\d{8})")


@dataclass
class TrainState:
    step: int
    parameters: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None
    rng: torch.Tensor
    config: dict[str, Any]
    elapsed: float = 0.0


def checkpoint_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a half-written one has a temporary name and is ignored)."""
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.fullmatch(p.name) and (p / "state.pt").is_file()]
    return sorted(found, key=lambda p: int(_NAME.fullmatch(p.name).group(1)))


def save_state(out: Path, state: TrainState, keep: int) -> Path:
    """Write the state under a temporary name, rename it into place, then drop all but the newest ``keep``."""
    folder = checkpoint_dir(out)
    final = folder / f"step-{state.step:08d}"
    tmp = folder / f".step-{state.step:08d}.{os.getpid()}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(vars(state), tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(out)[: -max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(path: Path) -> TrainState:
    try:
        data = torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=True)
        return TrainState(**data)
    except (OSError, RuntimeError, TypeError, EOFError) as e:
        raise CheckpointError(f"cannot read the training checkpoint {path}: {e}") from e


def check_compatible(saved: dict[str, Any], config: FinetuneConfig, path: Path) -> None:
    """A resume must use the settings the checkpoint was made with (those that change its meaning)."""
    current = config.to_dict()
    differ = [k for k in FinetuneConfig.RESUME_KEYS if saved.get(k) != current.get(k)]
    if differ:
        listed = ", ".join(f"{k} ({saved.get(k)!r} there, {current.get(k)!r} now)" for k in differ)
        raise CheckpointError(f"the checkpoint {path} was made with other settings: {listed}; use the same settings, another --out, or --resume false")
