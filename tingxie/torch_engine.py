"""The PyTorch engine: the model definition (``model.py``) on any device, behind the one engine interface.

It serves GPUs, fine-tuning and the reference check; on a CPU the ONNX Runtime engine (``tingxie.ort``) is faster.
Arrays cross the interface as NumPy: logits are copied back from the device once per decoder step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .engine import next_token_logprobs
from .mel import TorchMelFrontEnd
from .model import KVCache, Whisper


@dataclass(frozen=True)
class TorchFeatures:
    """Encoder output (audio, frames, state) on the model's device."""

    tensor: torch.Tensor

    @property
    def n_audio(self) -> int:
        return self.tensor.shape[0]

    def select(self, index: int) -> TorchFeatures:
        return TorchFeatures(self.tensor[index : index + 1])


class TorchEngine:
    """A ``Whisper`` module as an ``Engine``."""

    decodes_row_subsets = False
    drafts_exactly = False  # a product over several tokens rounds otherwise than one token's

    def __init__(self, module: Whisper, compute_type: str = "default"):
        self.module = module
        self.dims = module.dims
        self.compute_type = compute_type

    @property
    def is_multilingual(self) -> bool:
        return self.module.is_multilingual

    @property
    def num_languages(self) -> int:
        return self.module.num_languages

    @property
    def device(self) -> torch.device:
        return self.module.device

    @property
    def dtype(self) -> torch.dtype:
        return self.module.dtype

    @property
    def description(self) -> str:
        precision = "int8" if self.compute_type == "int8" else str(self.dtype).removeprefix("torch.")
        return f"torch {precision} ({self.device})"

    def log_mel(self, samples: np.ndarray, padding: int = 0) -> np.ndarray:
        from .mel import log_mel_spectrogram

        # the reference's own STFT (torch), so the float32 CPU path reproduces its features bit for bit
        return log_mel_spectrogram(samples, self.dims.n_mels, padding=padding).cpu().numpy()

    def mel_front_end(self) -> TorchMelFrontEnd:
        """``log_mel`` in blocks, for windows of a long recording (tingxie.mel_source)."""
        return TorchMelFrontEnd(self.dims.n_mels)

    @torch.inference_mode()
    def encode(self, mel: np.ndarray, keep_buffers: bool = True) -> TorchFeatures:
        mels = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))
        step = mels.shape[0] if self.device.type != "cpu" else 1  # on a CPU one window at a time bounds the attention memory
        return TorchFeatures(torch.cat([self.module.embed_audio(mels[i : i + step]) for i in range(0, mels.shape[0], step)]))

    @torch.inference_mode()
    def new_cache(self, features: TorchFeatures, repeat: int = 1) -> KVCache:
        return self.module.new_cache(features.tensor, repeat=repeat)

    @torch.inference_mode()
    def decode(self, tokens: np.ndarray, cache: KVCache, select: list[int] | None = None, rows=None) -> np.ndarray:
        logits = self.module.decode(torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)), cache)
        if select is not None:
            logits = logits[:, list(select)]
        return logits.float().cpu().numpy()

    @torch.inference_mode()
    def alignment_scores(self, tokens: np.ndarray, features: TorchFeatures, heads: list[tuple[int, int]],
                         text_vocab: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.asarray(tokens, dtype=np.int64)
        logits, cross = self.module.cross_attention_logits(torch.from_numpy(tokens), features.tensor)
        scores = torch.stack([cross[layer][0, head] for layer, head in heads])
        return next_token_logprobs(logits[0, :-1].float().cpu().numpy(), tokens[0, 1:], text_vocab), scores.float().cpu().numpy()
