"""A greedy window decode that takes a draft: the tokens of an earlier decode of the same window (a glossary's
first pass), checked several at a time.

Where the text being written follows the draft (the same last two tokens), the draft's next tokens go into one
decoder call with the last token; each position's logits then choose a token as a step would (the same filters
and greedy selector), and the draft's tokens are taken while they are the ones chosen. The first one that is not
ends the run: the cache is cut back to the tokens taken, and decoding goes on a step at a time until the text
follows the draft again. A second pass that writes much of its first pass's text again then costs a few decoder
calls for that text instead of one per token. A call of several tokens gives logits within rounding of single
steps' (ONNX Runtime's int8 products differ by up to ~0.3 in a logit), so a near tie may go the other way: a
glossary's second pass decides with it whether to keep its text, and makes a kept one again a step at a time
(``fallback.second_pass``).
"""

from __future__ import annotations

import math

import numpy as np

from ..engine import Engine, Features
from ..options import DecodingOptions
from ..tokenizer import Tokenizer
from .filters import LogitFilter, log_softmax_np
from .language import detect_language
from .selectors import GreedySelector
from .window import DecodingResult, WindowBatch, initial_tokens, logit_filters, pick_results, window_languages

DRAFT_TOKENS = 10  # most draft tokens per call: a call of 11 tokens costs about two steps of one (tiny.en int8, CPU)
MATCH = 2  # last tokens that must equal the draft's for its next ones to be tried (a failed call of 11 costs ~2 steps)


def can_draft(options: DecodingOptions, features: Features) -> bool:
    """Greedy at temperature 0, one window: where a draft's run gives the tokens single steps would."""
    return options.beam_size is None and options.temperature == 0 and features.n_audio == 1


def next_draft(draft: list[int], sampled: list[int], limit: int) -> list[int]:
    """The draft's tokens after the first place where it ends as ``sampled`` does (its last MATCH tokens: one is
    often a timestamp both passes begin with), at most ``limit``; [] where it does not."""
    if limit <= 0 or len(sampled) < MATCH:
        return []
    tail = sampled[-MATCH:]
    for end in range(MATCH, len(draft) + 1):  # the first place: a second pass keeps the first pass's order
        if draft[end - MATCH : end] == tail:
            return draft[end : end + limit]
    return []


def decode_drafted(engine: Engine, features: Features, tokenizer: Tokenizer, options: DecodingOptions, draft: list[int],
                   *, extra_filters: list[LogitFilter] | None = None) -> DecodingResult:
    """``decoder.decode`` of one window, greedy at temperature 0 (``can_draft``), with ``draft``'s runs checked
    several tokens a call."""
    options.check_window()
    n_ctx = engine.dims.n_text_ctx
    sample_len = options.sample_len or n_ctx // 2
    initial = initial_tokens(tokenizer, options, n_ctx, sample_len)
    sample_begin, sot_index = len(initial), initial.index(tokenizer.sot)
    tokens = np.asarray([initial], np.int64)
    languages, language_probs = window_languages(engine, features, tokenizer, options, detect_language, tokens, sot_index + 1, 1)
    selector = GreedySelector(0.0, tokenizer.eot)
    filters = logit_filters(tokenizer, options, sample_begin, engine.dims.n_audio_ctx) + list(extra_filters or [])
    cache = engine.new_cache(features)
    sum_logprobs = np.zeros(1, np.float32)
    logits = engine.decode(tokens, cache, select=[sot_index, sample_begin - 1])
    no_speech_probs = [math.nan]
    if tokenizer.no_speech is not None:
        no_speech_probs = np.exp(log_softmax_np(logits[:, 0]))[:, tokenizer.no_speech].tolist()
    ahead, proposed = logits[:, -1:], []  # logits of the next positions; the draft tokens fed after the next token
    for _ in range(sample_len):
        next_logits = ahead[:, 0]
        for f in filters:
            f.apply(next_logits, tokens)
        tokens, completed, _ = selector.update(tokens, next_logits, sum_logprobs)
        if completed or tokens.shape[-1] > n_ctx:
            break
        if proposed and int(tokens[0, -1]) == proposed[0]:  # the draft's token: its logits came with the last call
            ahead, proposed = ahead[:, 1:], proposed[1:]
            continue
        cache.length = tokens.shape[-1] - 1  # the tokens taken before the newest: a draft's rest is dropped
        budget = min(DRAFT_TOKENS, sample_len - (tokens.shape[-1] - sample_begin), n_ctx - tokens.shape[-1])
        proposed = next_draft(draft, tokens[0, sample_begin:].tolist(), budget)
        ahead = engine.decode(np.asarray([[tokens[0, -1], *proposed]], np.int64), cache)
    tokens = tokens.reshape(1, 1, -1)
    candidates, scores = selector.finalize(tokens, sum_logprobs.reshape(1, 1))
    batch = WindowBatch(1, 1, sample_begin, languages, language_probs, no_speech_probs)
    return pick_results(tokenizer, options, batch, candidates, scores, scores, features.select)[0]
