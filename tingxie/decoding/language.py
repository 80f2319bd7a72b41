"""Spoken-language identification from the decoder's first step."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..model import Whisper
from ..tokenizer import Tokenizer


@torch.inference_mode()
def detect_language(model: Whisper, audio_features: Tensor, tokenizer: Tokenizer) -> tuple[Tensor, list[dict[str, float]]]:
    """The most likely language token per audio and, per audio, a probability for every language code.

    The decoder is given <|startoftranscript|> alone and its next-token distribution is restricted
    to the language tokens.
    """
    if not model.is_multilingual:
        raise ValueError("this model is English-only: it has no language tokens to detect a language with")
    n_audio = audio_features.shape[0]
    sot = torch.full((n_audio, 1), tokenizer.sot, device=model.device)
    logits = model.logits(sot, audio_features)[:, 0]
    language_tokens = list(tokenizer.all_language_tokens)
    mask = torch.ones(logits.shape[-1], dtype=torch.bool, device=logits.device)
    mask[language_tokens] = False
    logits[:, mask] = -math.inf
    best = logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1).cpu()
    codes = list(tokenizer.all_language_codes)
    per_audio = [{code: float(probs[i, token]) for code, token in zip(codes, language_tokens)} for i in range(n_audio)]
    return best, per_audio
