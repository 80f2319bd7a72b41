"""Decode one batch of 30-s windows: initial tokens, logit filters, a token selector, a ranker."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..model import Whisper
from ..options import DecodingOptions
from ..tokenizer import Tokenizer
from .filters import LogitFilter
from .language import detect_language
from .selectors import BeamSearchSelector, GreedySelector
from .window import DecodingResult, WindowBatch, compression_ratio, initial_tokens, logit_filters, pick_results, sample, window_languages

__all__ = ["DecodingResult", "audio_features_of", "compression_ratio", "decode", "initial_tokens", "logit_filters"]


@torch.no_grad()  # callers outside inference mode would otherwise keep every encoder activation for autograd
def audio_features_of(model: Whisper, mel_or_features: Tensor) -> Tensor:
    """Encoder output for a mel batch; features already encoded pass through."""
    x = mel_or_features if mel_or_features.dim() == 3 else mel_or_features[None]
    if x.shape[-2:] == (model.dims.n_audio_ctx, model.dims.n_audio_state):
        return x.to(model.device, model.dtype)
    return model.embed_audio(x)


@torch.inference_mode()
def decode(
    model: Whisper,
    mel_or_features: Tensor,
    tokenizer: Tokenizer,
    options: DecodingOptions = DecodingOptions(),
    *,
    extra_filters: list[LogitFilter] | None = None,
    generator: torch.Generator | None = None,
) -> list[DecodingResult]:
    """Decode a batch of windows (mel (n, n_mels, 3000) or encoder features) with one set of options."""
    options.check_window()
    features = audio_features_of(model, mel_or_features)
    n_audio, n_ctx = features.shape[0], model.dims.n_text_ctx
    sample_len = options.sample_len or n_ctx // 2
    initial = initial_tokens(tokenizer, options, n_ctx, sample_len)
    sample_begin, sot_index = len(initial), initial.index(tokenizer.sot)

    tokens = torch.tensor([initial], device=model.device).repeat(n_audio, 1)
    languages, language_probs = window_languages(model, features, tokenizer, options, detect_language, tokens, sot_index + 1, n_audio)

    n_group = options.beam_size or options.best_of or 1
    fusion = None
    if options.lm is not None and options.beam_size is not None:  # sampled windows decode without the LM
        from .lm import LanguageModelFusion, LanguageModelScorer

        fusion = LanguageModelFusion(LanguageModelScorer.from_path(options.lm), tokenizer, options.lm_weight, options.lm_bonus, n_audio * n_group)
    if options.beam_size is not None:
        selector = BeamSearchSelector(options.beam_size, tokenizer.eot, options.patience, fusion)
    else:
        selector = GreedySelector(options.temperature, tokenizer.eot, generator)
    filters = logit_filters(tokenizer, options, sample_begin, model.dims.n_audio_ctx) + list(extra_filters or [])

    tokens = tokens.repeat_interleave(n_group, dim=0)
    cache = model.new_cache(features, repeat=n_group)
    sum_logprobs = torch.zeros(tokens.shape[0], device=model.device)
    no_speech_probs = [math.nan] * tokens.shape[0]

    logits = model.decode(tokens, cache)
    if tokenizer.no_speech is not None:
        no_speech_probs = logits[:, sot_index].float().softmax(dim=-1)[:, tokenizer.no_speech].tolist()
    tokens = sample(model, tokens, cache, logits, filters, selector, sample_len, n_ctx, sum_logprobs)

    tokens = tokens.reshape(n_audio, n_group, -1)
    candidates, scores = selector.finalize(tokens, sum_logprobs.reshape(n_audio, n_group))
    ranking = scores if fusion is None else selector.fused_scores()  # with an LM, rank by the fused score
    batch = WindowBatch(n_audio, n_group, sample_begin, languages, language_probs, no_speech_probs)
    results = pick_results(tokenizer, options, batch, candidates, scores, ranking, lambda i: features[i])
    return results

