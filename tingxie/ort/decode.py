"""Decode a batch of 30-s windows on ONNX Runtime: the shared filters, the NumPy selectors, the shared ranker."""

from __future__ import annotations

import math

import numpy as np

from ..decoding.filters import LogitFilter, log_softmax_np
from ..decoding.numpy_selectors import NumpyBeamSearchSelector, NumpyGreedySelector
from ..decoding.window import DecodingResult, WindowBatch, initial_tokens, logit_filters, pick_results, sample, window_languages
from ..options import DecodingOptions
from ..tokenizer import Tokenizer
from .runtime import OrtWhisper, WindowFeatures


def features_of(model: OrtWhisper, mel_or_features: np.ndarray | WindowFeatures) -> WindowFeatures:
    """Cross K/V for a mel batch (audio, n_mels, 3000) or one mel (n_mels, 3000); features pass through."""
    if isinstance(mel_or_features, WindowFeatures):
        return mel_or_features
    mel = np.asarray(mel_or_features, dtype=np.float32)
    return model.embed_audio(mel if mel.ndim == 3 else mel[None])


def detect_language(model: OrtWhisper, features: WindowFeatures, tokenizer: Tokenizer) -> tuple[np.ndarray, list[dict[str, float]]]:
    """The likeliest language token per audio and every language's probability (decoder's first step)."""
    if not model.is_multilingual:
        raise ValueError("this model is English-only: it has no language tokens to detect a language with")
    n_audio = features.n_audio
    logits = model.decode(np.full((n_audio, 1), tokenizer.sot, np.int64), model.new_cache(features))[:, 0]  # one token: one position
    language_tokens = list(tokenizer.all_language_tokens)
    masked = np.full_like(logits, -np.inf)
    masked[:, language_tokens] = logits[:, language_tokens]
    probs = np.exp(log_softmax_np(masked))
    codes = list(tokenizer.all_language_codes)
    return masked.argmax(axis=-1), [{c: float(probs[i, t]) for c, t in zip(codes, language_tokens)} for i in range(n_audio)]


def decode_windows(
    model: OrtWhisper,
    mel_or_features: np.ndarray | WindowFeatures,
    tokenizer: Tokenizer,
    options: DecodingOptions = DecodingOptions(),
    *,
    extra_filters: list[LogitFilter] | None = None,
    generator: np.random.Generator | None = None,
) -> list[DecodingResult]:
    """Like ``tingxie.decoding.decode``: greedy, sampling or beam search, with the same filters and ranking."""
    options.check_window()
    if options.lm is not None:
        from ..errors import OptionError

        raise OptionError("a language model (--lm) needs the torch backend")
    features = features_of(model, mel_or_features)
    n_audio, n_ctx = features.n_audio, model.dims.n_text_ctx
    sample_len = options.sample_len or n_ctx // 2
    initial = initial_tokens(tokenizer, options, n_ctx, sample_len)
    sample_begin, sot_index = len(initial), initial.index(tokenizer.sot)

    tokens = np.tile(np.asarray([initial], np.int64), (n_audio, 1))
    languages, language_probs = window_languages(model, features, tokenizer, options, detect_language, tokens, sot_index + 1, n_audio)

    n_group = options.beam_size or options.best_of or 1
    if options.beam_size is not None:
        selector = NumpyBeamSearchSelector(options.beam_size, tokenizer.eot, options.patience)
    else:
        # a fixed seed when none is given: the same audio gives the same fallback samples every run
        selector = NumpyGreedySelector(options.temperature, tokenizer.eot, generator if generator is not None else np.random.default_rng(0))
    filters = logit_filters(tokenizer, options, sample_begin, model.dims.n_audio_ctx) + list(extra_filters or [])

    tokens = np.repeat(tokens, n_group, axis=0)
    cache = model.new_cache(features, repeat=n_group)
    sum_logprobs = np.zeros(tokens.shape[0], np.float32)  # float32 as the torch path and the reference
    no_speech_probs = [math.nan] * tokens.shape[0]

    logits = model.decode(tokens, cache, select=[sot_index, -1])  # <|nospeech|> is read at the sot position
    if tokenizer.no_speech is not None:
        no_speech_probs = np.exp(log_softmax_np(logits[:, 0]))[:, tokenizer.no_speech].tolist()
    tokens = sample(model, tokens, cache, logits, filters, selector, sample_len, n_ctx, sum_logprobs)

    tokens = tokens.reshape(n_audio, n_group, -1)
    candidates, scores = selector.finalize(tokens, sum_logprobs.reshape(n_audio, n_group))
    batch = WindowBatch(n_audio, n_group, sample_begin, languages, language_probs, no_speech_probs)
    results = pick_results(tokenizer, options, batch, candidates, scores, scores, features.select)
    return results
