"""The token selectors on NumPy arrays (the ONNX Runtime path): the same search, other array operations."""

from __future__ import annotations

import numpy as np

from .filters import log_softmax_np, logsumexp_np
from .selectors import BeamSearchSelector, GreedySelector


class NumpyGreedySelector(GreedySelector):
    """Arg-max at temperature 0, otherwise sampling with a ``numpy.random.Generator``."""

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
        current = logits[np.arange(logits.shape[0]), next_tokens] - logsumexp_np(logits)
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
        tokens = np.pad(tokens, ((0, 0), (0, 0), (0, 1)), constant_values=self.eot)
        return tokens.tolist(), sum_logprobs.tolist()


class NumpyBeamSearchSelector(BeamSearchSelector):
    """Beam search over NumPy logits; the search itself is BeamSearchSelector's."""

    def top_candidates(self, logits: np.ndarray, sum_logprobs: np.ndarray) -> tuple[list[list[float]], list[list[int]]]:
        # log_softmax_np's arithmetic, (x - max) - log(sum(exp(x - max))), on the few top entries only: the ranking
        # of a row is that of x - max, so the full row of log-probabilities is never built
        shifted = logits.astype(np.float32, copy=False) - logits.max(axis=-1, keepdims=True)
        norm = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        top = top_k_rows(shifted, self.beam_size + 1)
        # summed in float32, as the reference does
        scores = sum_logprobs.astype(np.float32)[:, None] + (np.take_along_axis(shifted, top, axis=-1) - norm)
        return scores.tolist(), top.tolist()

    def as_arrays(self, next_tokens: list[list[int]], source_indices: list[int], like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(next_tokens, dtype=like.dtype), np.asarray(source_indices, dtype=np.int64)


def top_k_rows(x: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k largest entries, largest first (ties by index): (rows, k)."""
    return np.stack([top_k(row, k) for row in x])


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
