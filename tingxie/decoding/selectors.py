"""Token selectors: choose the next token of every sequence (greedy, sampling, beam search).

A selector sees (batch, vocab) filtered logits, the tokens so far and their summed log-probabilities,
and returns the extended tokens. Beam search also tells the caller how to reorder the KV cache.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Protocol

import numpy as np

from ..compiled import compiled_library
from .filters import log_softmax_np


class SequenceScorer(Protocol):
    """A score over whole sequences added to the beams' log-probabilities for ranking (e.g. a word LM).

    It keeps one state per beam row: ``totals`` gives, per row, the row's cumulative score with each
    candidate token appended; ``advance`` makes the new rows from (source row, appended token).
    """

    def totals(self, candidates: list[list[int]]) -> list[list[float]]: ...

    def advance(self, sources: list[int], tokens: list[int]) -> None: ...

    def total(self, row: int) -> float: ...


class GreedySelector:
    """Arg-max at temperature 0, otherwise sampling from softmax(logits / temperature) with a NumPy generator."""

    def __init__(self, temperature: float, eot: int, generator: np.random.Generator | None = None):
        self.temperature = temperature
        self.eot = eot
        self.generator = generator

    def reset(self) -> None:
        pass

    def update(self, tokens: np.ndarray, logits: np.ndarray, sum_logprobs: np.ndarray) -> tuple[np.ndarray, bool, None]:
        logits = logits.astype(np.float32, copy=False)
        if self.temperature == 0:
            next_tokens = logits.argmax(axis=-1)
        else:
            probs = np.exp(log_softmax_np(logits / np.float32(self.temperature)))
            rng = self.generator if self.generator is not None else np.random.default_rng()
            # inverse-CDF sampling, one uniform draw per row
            draws = rng.random(probs.shape[0]) * probs.sum(axis=-1)
            next_tokens = np.minimum((probs.cumsum(axis=-1) < draws[:, None]).sum(axis=-1), probs.shape[-1] - 1)
        # only the chosen tokens' log-probabilities are needed: one logsumexp per row, no full log_softmax
        peak, log_sum = row_log_norms(logits)
        current = logits[np.arange(logits.shape[0]), next_tokens] - (peak + log_sum)
        finished = tokens[:, -1] == self.eot
        sum_logprobs += current * ~finished
        next_tokens[finished] = self.eot
        tokens = np.concatenate([tokens, next_tokens[:, None].astype(tokens.dtype)], axis=-1)
        return tokens, bool((tokens[:, -1] == self.eot).all()), None

    def unfinished_rows(self, tokens: np.ndarray) -> np.ndarray | None:
        """The rows not ended yet (None: all of them), whose logits the next step must compute."""
        open_rows = tokens[:, -1] != self.eot
        return None if open_rows.all() else np.flatnonzero(open_rows)

    def finalize(self, tokens: np.ndarray, sum_logprobs: np.ndarray) -> tuple[list[list[list[int]]], list[list[float]]]:
        """tokens (n_audio, n_group, length) -> per audio, candidate token lists ending in eot, and their scores."""
        tokens = np.pad(tokens, ((0, 0), (0, 0), (0, 1)), constant_values=self.eot)
        return tokens.tolist(), sum_logprobs.tolist()


class BeamSearchSelector:
    """Beam search over ``beam_size`` beams per audio; finished hypotheses are kept until
    ``round(beam_size * patience)`` of them exist for every audio."""

    def __init__(self, beam_size: int, eot: int, patience: float | None = None, fusion: SequenceScorer | None = None):
        self.beam_size = beam_size
        self.fusion = fusion  # a sequence-level score added for ranking (LM shallow fusion); None ranks by log-probability
        self.eot = eot
        self.patience = patience or 1.0
        self.max_candidates = round(beam_size * self.patience)
        if self.max_candidates <= 0:
            raise ValueError(f"patience {patience} leaves no candidates")
        self.finished: list[dict[tuple[int, ...], float]] | None = None
        self.finished_fused: list[dict[tuple[int, ...], float]] = []

    def reset(self) -> None:
        self.finished = None
        self.finished_fused = []

    def update(self, tokens: np.ndarray, logits: np.ndarray, sum_logprobs: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray | None]:
        if tokens.shape[0] % self.beam_size != 0:
            raise ValueError(f"{tokens.shape[0]} sequences are not a multiple of beam_size {self.beam_size}")
        n_audio = tokens.shape[0] // self.beam_size
        if self.finished is None:
            self.finished = [{} for _ in range(n_audio)]
            self.finished_fused = [{} for _ in range(n_audio)]
        # an audio with all its candidates (in a batch of windows) is not searched further: its rows only carry eot
        done = [len(kept) >= self.max_candidates for kept in self.finished] if self.fusion is None else [False] * n_audio
        candidate_scores, top_tokens = self._top_candidates_of(logits, sum_logprobs, done)
        prefixes = tokens.tolist()
        fused = self.fusion.totals(top_tokens) if self.fusion is not None else None
        next_tokens: list[list[int]] = []
        source_indices: list[int] = []
        for i in range(n_audio):
            if done[i]:
                for idx in range(i * self.beam_size, (i + 1) * self.beam_size):
                    next_tokens.append(prefixes[idx] + [self.eot])
                    source_indices.append(idx)
                continue
            # a candidate is (the first row with its prefix, next token): rows with equal prefixes (all beams at the
            # first step) give one candidate, as keying by the whole sequence would, without building 30 long tuples
            first_row: dict[tuple[int, ...], int] = {}
            scores: dict[tuple[int, int], float] = {}
            sources: dict[tuple[int, int], int] = {}
            ranks: dict[tuple[int, int], float] = {}  # fused scores, only with fusion
            key = scores.get if fused is None else ranks.get
            for j in range(self.beam_size):
                idx = i * self.beam_size + j
                prefix = first_row.setdefault(tuple(prefixes[idx]), idx)
                for k, (score, token) in enumerate(zip(candidate_scores[idx], top_tokens[idx])):
                    candidate = (prefix, token)
                    scores[candidate] = score
                    sources[candidate] = idx
                    if fused is not None:
                        ranks[candidate] = score + fused[idx][k]
            newly_finished: dict[tuple[int, int], float] = {}
            saved = 0
            for candidate in sorted(scores, key=key, reverse=True):
                if candidate[1] == self.eot:
                    newly_finished[candidate] = scores[candidate]
                else:
                    sum_logprobs[len(next_tokens)] = scores[candidate]
                    next_tokens.append(prefixes[sources[candidate]] + [candidate[1]])
                    source_indices.append(sources[candidate])
                    saved += 1
                    if saved == self.beam_size:
                        break
            kept = self.finished[i]
            for candidate in sorted(newly_finished, key=key, reverse=True):
                if len(kept) >= self.max_candidates:
                    break
                sequence = (*prefixes[sources[candidate]], candidate[1])
                kept[sequence] = newly_finished[candidate]
                if fused is not None:
                    self.finished_fused[i][sequence] = ranks[candidate]
        completed = all(len(kept) >= self.max_candidates for kept in self.finished)
        if self.fusion is not None:
            self.fusion.advance(source_indices, [seq[-1] for seq in next_tokens])
        new_tokens, sources = self.as_arrays(next_tokens, source_indices, tokens)
        return new_tokens, completed, sources

    def unfinished_rows(self, tokens: np.ndarray) -> list[int] | None:
        """The rows of audios still searched (None: all of them), whose logits the next step must compute."""
        if self.finished is None or self.fusion is not None:
            return None
        done = [len(kept) >= self.max_candidates for kept in self.finished]
        return self._rows_of(done) if any(done) else None

    def _rows_of(self, done: list[bool]) -> list[int]:
        """The rows of the audios not done."""
        return [i * self.beam_size + j for i, d in enumerate(done) if not d for j in range(self.beam_size)]

    def _top_candidates_of(self, logits: np.ndarray, sum_logprobs: np.ndarray, done: list[bool]) -> tuple[list, list]:
        """``top_candidates`` of the rows of audios not done (empty lists for the others' rows)."""
        if not any(done):
            return self.top_candidates(logits, sum_logprobs)
        rows = self._rows_of(done)
        scores: list[list[float]] = [[] for _ in range(logits.shape[0])]
        tokens: list[list[int]] = [[] for _ in range(logits.shape[0])]
        if rows:
            part_scores, part_tokens = self.top_candidates(logits[rows], sum_logprobs[rows])
            for row, sc, tk in zip(rows, part_scores, part_tokens):
                scores[row], tokens[row] = sc, tk
        return scores, tokens

    def top_candidates(self, logits: np.ndarray, sum_logprobs: np.ndarray) -> tuple[list[list[float]], list[list[int]]]:
        """Per row, the beam_size + 1 likeliest next tokens and the row's score with each appended."""
        # log_softmax's arithmetic, (x - max) - log(sum(exp(x - max))), on the few top entries only: the ranking
        # of a row is that of x, so the full row of log-probabilities is never built
        logits = logits.astype(np.float32, copy=False)
        peak, log_sum = row_log_norms(logits)
        top = top_k_rows(logits, self.beam_size + 1)
        shifted = np.take_along_axis(logits, top, axis=-1) - peak[:, None]
        # candidate scores summed in float32, as the reference does, so ties break the same way
        scores = sum_logprobs.astype(np.float32)[:, None] + (shifted - log_sum[:, None])
        return scores.tolist(), top.tolist()

    def as_arrays(self, next_tokens: list[list[int]], source_indices: list[int], like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(next_tokens, dtype=like.dtype), np.asarray(source_indices, dtype=np.int64)

    def finalize(self, tokens: np.ndarray, sum_logprobs: np.ndarray) -> tuple[list[list[list[int]]], list[list[float]]]:
        """Finished hypotheses per audio, topped up with the best unfinished beams where too few finished."""
        finished = self.finished or [{} for _ in range(tokens.shape[0])]
        scores = sum_logprobs.tolist()
        for i, sequences in enumerate(finished):
            if len(sequences) < self.beam_size:
                rank = (lambda j: scores[i][j]) if self.fusion is None else (lambda j: scores[i][j] + self.fusion.total(i * self.beam_size + j))
                for j in sorted(range(len(scores[i])), key=rank, reverse=True):
                    sequence = (*tokens[i, j].tolist(), self.eot)
                    sequences[sequence] = scores[i][j]
                    if self.fusion is not None:
                        self.finished_fused[i][sequence] = scores[i][j] + self.fusion.total(i * self.beam_size + j)
                    if len(sequences) >= self.beam_size:
                        break
        return [[list(s) for s in seqs] for seqs in finished], [list(seqs.values()) for seqs in finished]

    def fused_scores(self) -> list[list[float]]:
        """With fusion, the fused score of each candidate ``finalize`` returned, in the same order (for ranking)."""
        assert self.finished is not None
        return [[fused[s] for s in seqs] for seqs, fused in zip(self.finished, self.finished_fused)]


class MaximumLikelihoodRanker:
    """Pick the candidate with the highest length-normalised log-probability."""

    def __init__(self, length_penalty: float | None):
        self.length_penalty = length_penalty

    def score(self, logprob: float, length: int) -> float:
        length = max(length, 1)  # an immediate end-of-text has no tokens; the reference divides by zero there
        penalty = length if self.length_penalty is None else ((5 + length) / 6) ** self.length_penalty
        return logprob / penalty

    def rank(self, tokens: list[list[list[int]]], sum_logprobs: list[list[float]]) -> list[int]:
        best = []
        for candidates, logprobs in zip(tokens, sum_logprobs):
            scores = [self.score(lp, len(t)) for t, lp in zip(candidates, logprobs)]
            best.append(max(range(len(scores)), key=scores.__getitem__))
        return best


def top_k_rows(x: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k largest entries, largest first (ties by index): (rows, k)."""
    library = _select_library()
    if library is not None and x.ndim == 2 and x.dtype == np.float32 and x.flags.c_contiguous and x.shape[0]:
        out = np.empty((x.shape[0], k), np.int64)
        # one pass per row in C: NumPy's passes cost ~0.1-0.4 ms a beam-5 step (thousands of tokens near the best)
        if library.top_k_rows(x.ctypes.data, x.shape[0], x.shape[1], k, out.ctypes.data) == 0:
            return out
    return np.stack([top_k(row, k) for row in x])


def row_log_norms(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of float32 (rows, n) logits: the largest entry and log(sum(exp(x - largest))), both float32, so that
    log_softmax(x) = (x - largest) - log_sum (a row of only -inf: -inf and -inf)."""
    library = _select_library()
    if library is not None and x.ndim == 2 and x.shape[0] and x.shape[1]:
        # a view (a draft's logits, (rows, tokens, vocab)[:, j]) is copied, not sent to NumPy's sums: the same
        # normaliser whatever the layout, so a drafted run's scores are a plain run's
        x = np.ascontiguousarray(x, np.float32)
        peak, sums = np.empty(x.shape[0], np.float32), np.empty(x.shape[0], np.float64)
        library.exp_sums(x.ctypes.data, x.shape[0], x.shape[1], peak.ctypes.data, sums.ctypes.data)
    else:
        peak = x.max(axis=-1)
        safe = np.where(np.isfinite(peak), peak, np.float32(0.0)).astype(x.dtype, copy=False)
        sums = np.exp(x - safe[:, None]).sum(axis=-1)
    with np.errstate(divide="ignore"):
        return peak, np.log(sums.astype(np.float32))


@functools.cache
def _select_library() -> ctypes.CDLL | None:
    """csrc/select.c as built at install (optional), or None."""
    rows = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    sums = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    return compiled_library("tingxie._select", {"top_k_rows": (rows, ctypes.c_int), "exp_sums": (sums, None)})


def top_k(row: np.ndarray, k: int, margin: float = 12.0) -> np.ndarray:
    """Indices of the k largest entries of one row, largest first (ties by index). Every entry within
    ``margin`` of the best is found in one pass (a few tokens, usually); the margin widens while fewer
    than k are found, and a full partition of the row is the last resort (ten times slower)."""
    peak = row.max()
    for _ in range(4):
        near = np.flatnonzero(row >= peak - margin)
        if near.size >= k:
            break
        margin *= 4
    else:
        near = np.argpartition(-row, k - 1)[:k]
    if near.size > 4 * k:  # hundreds, usually: keep those at least as large as the k-th largest (ties included)
        values = row[near]
        near = near[values >= np.partition(values, near.size - k)[near.size - k]]
    return near[np.lexsort((near, -row[near]))][:k]
