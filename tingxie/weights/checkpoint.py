"""The one in-memory form every checkpoint format is converted to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the ONNX Runtime path reads dimensions without importing torch
    import torch


@dataclass(frozen=True)
class ModelDimensions:
    """Sizes of a Whisper model; always derived from the checkpoint, never from its name."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @property
    def is_multilingual(self) -> bool:
        return self.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        return self.n_vocab - 51765 - int(self.is_multilingual)


@dataclass
class Checkpoint:
    """Canonical weights: OpenAI parameter names, e.g. ``encoder.blocks.0.attn.query.weight``.

    ``alignment_heads`` is a list of (layer, head) pairs of the decoder's cross-attention used for
    word timestamps, or None where the checkpoint does not say (the registry may then know).
    """

    dims: ModelDimensions
    state_dict: dict[str, torch.Tensor]
    alignment_heads: list[tuple[int, int]] | None = None
    source: Path | None = None
    format: str = ""
    extra: dict = field(default_factory=dict)
