"""Spoken-language identification from the decoder's first step."""

from __future__ import annotations

import numpy as np

from ..engine import Engine, Features
from ..tokenizer import Tokenizer
from .filters import log_softmax_np


def detect_language(engine: Engine, features: Features, tokenizer: Tokenizer) -> tuple[np.ndarray, list[dict[str, float]]]:
    """The most likely language token per audio and, per audio, a probability for every language code.

    The decoder is given <|startoftranscript|> alone and its next-token distribution is restricted
    to the language tokens.
    """
    if not engine.is_multilingual:
        raise ValueError("this model is English-only: it has no language tokens to detect a language with")
    n_audio = features.n_audio
    logits = engine.decode(np.full((n_audio, 1), tokenizer.sot, np.int64), engine.new_cache(features))[:, 0]
    language_tokens = list(tokenizer.all_language_tokens)
    masked = np.full_like(logits, -np.inf)
    masked[:, language_tokens] = logits[:, language_tokens]
    probs = np.exp(log_softmax_np(masked))
    codes = list(tokenizer.all_language_codes)
    return masked.argmax(axis=-1), [{c: float(probs[i, t]) for c, t in zip(codes, language_tokens)} for i in range(n_audio)]
