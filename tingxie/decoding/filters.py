"""Logit filters: each edits the next-token logits in place given the tokens so far.

``tokens`` is (batch, length) including the initial prompt/sot sequence; ``sample_begin`` is the
index of the first sampled token. Logits and tokens are NumPy arrays, whatever engine made them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class LogitFilter:
    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        raise NotImplementedError


class SuppressBlank(LogitFilter):
    """At the first sampled position forbid a blank (' ') and end-of-text: a window must say something or be skipped."""

    def __init__(self, blank_tokens: Sequence[int], eot: int, sample_begin: int):
        self.suppressed = np.asarray(list(blank_tokens) + [eot], dtype=np.int64)
        self.sample_begin = sample_begin

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        if tokens.shape[1] == self.sample_begin:
            logits[:, self.suppressed] = -math.inf


class SuppressTokens(LogitFilter):
    """Never sample these tokens (special tokens, non-speech symbols, user-given ids)."""

    def __init__(self, suppress_tokens: Sequence[int]):
        self.suppress_tokens = np.asarray(list(suppress_tokens), dtype=np.int64)  # an index array: no list conversion per token

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        logits[:, self.suppress_tokens] = -math.inf


class ApplyTimestampRules(LogitFilter):
    """Whisper's timestamp grammar.

    Timestamps come in pairs (end of one segment, start of the next) except right before the end,
    never decrease, a segment has non-zero length, the first token is a timestamp no later than
    ``max_initial_timestamp_index``, and a timestamp is forced where the timestamps together are
    more likely than any single text token.
    """

    def __init__(self, timestamp_begin: int, eot: int, no_timestamps: int | None, sample_begin: int, max_initial_timestamp_index: int | None):
        self.timestamp_begin = timestamp_begin
        self.eot = eot
        self.no_timestamps = no_timestamps
        self.sample_begin = sample_begin
        self.max_initial_timestamp_index = max_initial_timestamp_index

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        ts = self.timestamp_begin
        if self.no_timestamps is not None:
            logits[:, self.no_timestamps] = -math.inf
        sampled = tokens[:, self.sample_begin :].tolist()
        for k, seq in enumerate(sampled):
            last_was_timestamp = len(seq) >= 1 and seq[-1] >= ts
            penultimate_was_timestamp = len(seq) < 2 or seq[-2] >= ts
            if last_was_timestamp:
                if penultimate_was_timestamp:  # a pair just closed: text must follow
                    logits[k, ts:] = -math.inf
                else:  # a lone timestamp: another timestamp or the end must follow
                    logits[k, : self.eot] = -math.inf
            timestamps = [t for t in seq if t >= ts]
            if timestamps:
                # no going back in time; a segment's end must differ from its start
                last = timestamps[-1] if last_was_timestamp and not penultimate_was_timestamp else timestamps[-1] + 1
                logits[k, ts:last] = -math.inf
        if tokens.shape[1] == self.sample_begin:
            logits[:, :ts] = -math.inf
            if self.max_initial_timestamp_index is not None:
                logits[:, ts + self.max_initial_timestamp_index + 1 :] = -math.inf
        logits[timestamps_beat_text(logits, ts), :ts] = -math.inf


def timestamps_beat_text(logits: np.ndarray, ts: int) -> np.ndarray:
    """Per row: is the total probability of the timestamps above that of the likeliest text token?"""
    # the softmax normaliser is on both sides: compare logsumexp(timestamps) with the text maximum
    # directly, which takes exp over the ~1,500 timestamps instead of the whole vocabulary
    return logsumexp_np(logits[:, ts:].astype(np.float32, copy=False)) > logits[:, :ts].max(axis=-1)


def logsumexp_np(x: np.ndarray) -> np.ndarray:
    """log(sum(exp(x))) over the last axis; a row of only -inf gives -inf (not nan)."""
    peak = x.max(axis=-1)
    safe = np.where(np.isfinite(peak), peak, np.float32(0.0)).astype(x.dtype, copy=False)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(x - safe[:, None]).sum(axis=-1))


def log_softmax_np(logits: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis in NumPy (rows with -inf entries allowed)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class BoostTokens(LogitFilter):
    """Add a fixed bonus to chosen tokens (vocabulary biasing)."""

    def __init__(self, token_bonus: dict[int, float]):
        self.ids = np.asarray(list(token_bonus), dtype=np.int64)
        self.bonus = np.asarray(list(token_bonus.values()), dtype=np.float32)

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        logits[:, self.ids] += self.bonus


def suppress_token_ids(spec: str | Sequence[int] | None, non_speech_tokens: Sequence[int], always: Sequence[int]) -> tuple[int, ...]:
    """The reference's suppress list: user ids, '-1' meaning the non-speech symbols, plus special tokens."""
    if spec is None:
        ids: list[int] = []
    elif isinstance(spec, str):
        ids = [int(t) for t in spec.split(",") if t.strip()]
    else:
        ids = list(spec)
    if -1 in ids:
        ids = [t for t in ids if t >= 0] + list(non_speech_tokens)
    return tuple(sorted(set(ids) | set(always)))
