"""Decode a batch of 30-s windows on any engine: the initial tokens, the logit filters, a token selector
(greedy, sampling or beam search, with optional LM fusion) and the ranker, all on NumPy arrays."""

from __future__ import annotations

import math

import numpy as np

from ..engine import Engine, Features
from ..options import DecodingOptions
from ..tokenizer import Tokenizer
from .filters import LogitFilter, log_softmax_np
from .language import detect_language
from .selectors import BeamSearchSelector, GreedySelector
from .window import DecodingResult, WindowBatch, initial_tokens, logit_filters, pick_results, sample, window_languages


def features_of(engine: Engine, mel_or_features: np.ndarray | Features) -> Features:
    """Features for a mel batch (audio, n_mels, 3000) or one mel (n_mels, 3000); features pass through."""
    if isinstance(mel_or_features, np.ndarray):
        mel = mel_or_features.astype(np.float32, copy=False)
        return engine.encode(mel if mel.ndim == 3 else mel[None])
    return mel_or_features


def decode(
    engine: Engine,
    mel_or_features: np.ndarray | Features,
    tokenizer: Tokenizer,
    options: DecodingOptions = DecodingOptions(),
    *,
    extra_filters: list[LogitFilter] | None = None,
    generator: np.random.Generator | None = None,
) -> list[DecodingResult]:
    """Decode a batch of windows with one set of options: one result per window."""
    options.check_window()
    features = features_of(engine, mel_or_features)
    n_audio, n_ctx = features.n_audio, engine.dims.n_text_ctx
    sample_len = options.sample_len or n_ctx // 2
    initial = initial_tokens(tokenizer, options, n_ctx, sample_len)
    sample_begin, sot_index = len(initial), initial.index(tokenizer.sot)

    tokens = np.tile(np.asarray([initial], np.int64), (n_audio, 1))
    languages, language_probs = window_languages(engine, features, tokenizer, options, detect_language, tokens, sot_index + 1, n_audio)

    n_group = options.beam_size or options.best_of or 1
    fusion = None
    if options.lm is not None and options.beam_size is not None:  # sampled windows decode without the LM
        from .lm import LanguageModelFusion, LanguageModelScorer

        fusion = LanguageModelFusion(LanguageModelScorer.from_path(options.lm), tokenizer, options.lm_weight, options.lm_bonus, n_audio * n_group)
    if options.beam_size is not None:
        selector = BeamSearchSelector(options.beam_size, tokenizer.eot, options.patience, fusion)
    else:
        # a fixed seed when none is given: the same audio gives the same fallback samples every run
        selector = GreedySelector(options.temperature, tokenizer.eot, generator if generator is not None else np.random.default_rng(0))
    filters = logit_filters(tokenizer, options, sample_begin, engine.dims.n_audio_ctx) + list(extra_filters or [])

    tokens = np.repeat(tokens, n_group, axis=0)
    cache = engine.new_cache(features, repeat=n_group)
    sum_logprobs = np.zeros(tokens.shape[0], np.float32)  # float32 as the reference
    no_speech_probs = [math.nan] * tokens.shape[0]

    logits = engine.decode(tokens, cache, select=[sot_index, sample_begin - 1])  # <|nospeech|> is read at the sot position
    if tokenizer.no_speech is not None:
        no_speech_probs = np.exp(log_softmax_np(logits[:, 0]))[:, tokenizer.no_speech].tolist()
    tokens = sample(engine, tokens, cache, logits, filters, selector, sample_len, n_ctx, sum_logprobs)

    tokens = tokens.reshape(n_audio, n_group, -1)
    candidates, scores = selector.finalize(tokens, sum_logprobs.reshape(n_audio, n_group))
    ranking = scores if fusion is None else selector.fused_scores()  # with an LM, rank by the fused score
    batch = WindowBatch(n_audio, n_group, sample_begin, languages, language_probs, no_speech_probs)
    return pick_results(tokenizer, options, batch, candidates, scores, ranking, features.select)
