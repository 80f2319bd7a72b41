"""The one interface between Whisper's arithmetic and everything written above it.

An engine runs a model: ONNX Runtime on a CPU (``tingxie.ort``, the default) or PyTorch (``tingxie.torch_engine``:
GPUs, training, the reference check). Window decoding, temperature fallback, language identification, word timing,
hotwords, LM fusion, VAD-batched windows and streaming are written once against this interface, with NumPy arrays:
log-mel frames in, encoder features (opaque to the caller), a decoder step over an explicit cache, logits out.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from .weights.checkpoint import ModelDimensions


@runtime_checkable
class Features(Protocol):
    """The encoder's output for a batch of windows, in the engine's own form."""

    @property
    def n_audio(self) -> int: ...

    def select(self, index: int) -> Features:
        """The features of one window, as a batch of one."""
        ...


class DecoderCache(Protocol):
    """The decoder's keys and values so far, for every row (audio x beams); written in place by ``decode``."""

    length: int

    def reorder(self, source_indices: np.ndarray) -> None:
        """Row b continues row ``source_indices[b]`` (beam search)."""
        ...


@runtime_checkable
class Engine(Protocol):
    """What runs a Whisper model; every array that crosses this line is a NumPy array."""

    dims: ModelDimensions
    # decode(rows=...) computes only those rows (the windows of a batch still decoding); engines without it decode all
    decodes_row_subsets: bool
    # a decode call of several new tokens per row gives the very logits single-token calls would (a draft's run is exact)
    drafts_exactly: bool

    @property
    def is_multilingual(self) -> bool: ...

    @property
    def num_languages(self) -> int: ...

    @property
    def description(self) -> str:
        """What runs the model, for people: e.g. 'onnxruntime int8 (cpu)'."""
        ...

    def log_mel(self, samples: np.ndarray, padding: int = 0) -> np.ndarray:
        """Whisper's log-mel (n_mels, frames) of 16 kHz samples followed by ``padding`` zeros, float32."""
        ...

    def encode(self, mel: np.ndarray, keep_buffers: bool = True) -> Features:
        """Windows of log-mel (audio, n_mels, 3000) -> their features. ``keep_buffers=False``: a batch, whose
        working memory is given back after each window (it is decoded after all are encoded)."""
        ...

    def new_cache(self, features: Features, repeat: int = 1) -> DecoderCache:
        """An empty cache whose rows are ``repeat`` consecutive rows per audio (beams or samples)."""
        ...

    def decode(self, tokens: np.ndarray, cache: DecoderCache, select: list[int] | None = None,
               rows: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Logits (batch, positions, vocab) float32 for ``tokens`` (batch, new) appended after the cached ones;
        advances the cache. ``select``: only these of the new positions. ``rows``: see ``decodes_row_subsets``."""
        ...

    def alignment_scores(self, tokens: np.ndarray, features: Features, heads: list[tuple[int, int]],
                         text_vocab: int) -> tuple[np.ndarray, np.ndarray]:
        """For one whole sequence ``tokens`` (1, T) over one window's features: each next token's log-probability
        among the first ``text_vocab`` tokens (T - 1,; -inf where that token is not among them) and the pre-softmax
        cross-attention scores of the given (layer, head) pairs (heads, T, frames), float32."""
        ...


def next_token_logprobs(logits: np.ndarray, targets: np.ndarray, text_vocab: int) -> np.ndarray:
    """log softmax(logits[i, :text_vocab])[targets[i]] per row, -inf for a target outside the text vocabulary
    (rows of logits (n, vocab) and targets (n,)); in place on a copy of the rows' text part only."""
    text = logits[:, :text_vocab]
    peak = text.max(axis=-1)
    shifted = text - peak[:, None]
    norm = np.log(np.exp(shifted, out=shifted).sum(axis=-1))
    inside = targets < text_vocab
    picked = np.where(inside, text[np.arange(len(targets)), np.minimum(targets, text_vocab - 1)] - peak - norm, -np.inf)
    return picked.astype(np.float32)


def default_alignment_heads(dims: ModelDimensions) -> list[tuple[int, int]]:
    """Without known heads, every head of the upper half of the decoder, as the reference does."""
    return [(layer, head) for layer in range(dims.n_text_layer // 2, dims.n_text_layer) for head in range(dims.n_text_head)]


def window_features(engine: Engine, mel_window: Any) -> Features:
    """The features of one padded mel window (n_mels, 3000)."""
    return engine.encode(np.asarray(mel_window, dtype=np.float32)[None])
