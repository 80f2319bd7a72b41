"""A greedy window decode that takes a draft: the tokens of an earlier decode of the same window (a glossary's
first pass), checked several at a time.

Where the text being written follows the draft (the same last two tokens), the draft's next tokens go into one
decoder call with the last token; each position's logits then choose a token as a step would (the same filters
and greedy selector), and the draft's tokens are taken while they are the ones chosen. The first one that is not
ends the run: the cache is cut back to the tokens taken, and decoding goes on a step at a time until the text
follows the draft again. A second pass that writes much of its first pass's text again then costs a few decoder
calls for that text instead of one per token. A call of several tokens gives logits within rounding of single
steps' (ONNX Runtime's int8 products differ by up to ~0.3 in a logit), so a near tie may go the other way: a
glossary's second pass decides with it whether to keep its text, and makes a kept one exact (``Drafted.exact``):
from the state before the first call of several tokens (the same calls as a plain decode's up to there; the KV
buffer's size does not change a step's logits) a step at a time to the end. On an engine whose calls of several
tokens give the single steps' logits bit for bit (``Engine.drafts_exactly``: the compiled int8 step) the drafted
result is the plain one already.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass
class Drafted:
    """A drafted decode's result, and the way to the plain decode's (``decoder.decode``) exactly."""

    result: DecodingResult
    resume: Callable[[], DecodingResult] | None  # None: every call had one token, ``result`` is the plain decode's

    def exact(self) -> DecodingResult:
        """The plain decode's result: ``result`` itself, or the decode made again a step at a time from the last state
        it shares with the plain one (the filters' state as then: the copies taken there)."""
        return self.result if self.resume is None else self.resume()


def decode_drafted(engine: Engine, features: Features, tokenizer: Tokenizer, options: DecodingOptions, draft: list[int],
                   *, extra_filters: list[LogitFilter] | None = None) -> Drafted:
    """``decoder.decode`` of one window, greedy at temperature 0 (``can_draft``), with ``draft``'s runs checked
    several tokens a call: within rounding of the plain decode's result (``Drafted.exact`` makes that one). The
    filters' state must be their attributes (each is copied, shallowly, where the first run is tried)."""
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
    batch = WindowBatch(1, 1, sample_begin, languages, language_probs, no_speech_probs)

    def sample(tokens: np.ndarray, sum_logprobs: np.ndarray, ahead: np.ndarray, filters: list[LogitFilter], draft: list[int]) -> tuple:
        """(tokens, sum_logprobs, the state before the first call of several tokens or None) from ``ahead``, the
        logits of the next position(s)."""
        proposed: list[int] = []  # the draft tokens fed after the newest token
        shared = None
        for _ in range(sample_len - (tokens.shape[-1] - sample_begin)):
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
            if proposed and shared is None:
                shared = (tokens, sum_logprobs.copy(), [copy.copy(f) for f in filters])
            ahead = engine.decode(np.asarray([[tokens[0, -1], *proposed]], np.int64), cache)
        return tokens, sum_logprobs, shared

    def result_of(tokens: np.ndarray, sum_logprobs: np.ndarray) -> DecodingResult:
        candidates, scores = selector.finalize(tokens.reshape(1, 1, -1), sum_logprobs.reshape(1, 1))
        return pick_results(tokenizer, options, batch, candidates, scores, scores, features.select)[0]

    tokens, sum_logprobs, shared = sample(tokens, sum_logprobs, logits[:, -1:], filters, draft)
    if shared is None or getattr(engine, "drafts_exactly", False):
        return Drafted(result_of(tokens, sum_logprobs), None)

    def resume() -> DecodingResult:
        tokens, sum_logprobs, filters = shared[0], shared[1].copy(), [copy.copy(f) for f in shared[2]]
        cache.length = tokens.shape[-1] - 1
        ahead = engine.decode(tokens[:, -1:], cache)
        return result_of(*sample(tokens, sum_logprobs, ahead, filters, [])[:2])

    return Drafted(result_of(tokens, sum_logprobs), resume)
