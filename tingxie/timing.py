"""Word-level timestamps: align text tokens to audio frames through the alignment heads'
cross-attention and dynamic time warping, then merge punctuation and tidy the edges."""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import numpy as np

from .audio import TOKENS_PER_SECOND
from .compiled import compiled_library
from .engine import Engine, Features
from .tokenizer import Tokenizer


@dataclass
class WordTiming:
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window of odd ``width`` along the last axis, reflect-padded; NaN sorts last, as in a
    sort-based filter (the reference's). The ``width`` shifted copies go through a sorting network (odd-even
    transposition: elementwise minimum/maximum), faster than sorting every window and exactly its values; one
    leading row (a head's tokens x frames) at a time, so the copies stay a few MB."""
    if width % 2 != 1 or width <= 0:
        raise ValueError("median filter width must be a positive odd number")
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    library = _timing_library()
    if width == 7 and x.dtype == np.float32 and library is not None:  # the compiled network: the same values, ~10x faster
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        n = x.shape[-1]
        scratch = np.empty(n + 6, np.float32)  # named: a temporary's buffer would be freed before the call
        library.median7_rows(x.ctypes.data, x.size // n, n, scratch.ctypes.data, out.ctypes.data)
        return out
    out = np.empty_like(x)
    for index in np.ndindex(x.shape[:-2] if x.ndim > 2 else ()):
        out[index] = _median_rows(x[index], width)
    return out


def _median_rows(x: np.ndarray, width: int) -> np.ndarray:
    pad, n = width // 2, x.shape[-1]
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    missing = np.isnan(padded)
    # NaN as +inf for the network; a window whose middle rank falls among its NaNs gives NaN, as the sort would
    lanes = [np.where(missing[..., k : k + n], np.inf, padded[..., k : k + n]) for k in range(width)]
    for rnd in range(width):
        for k in range(rnd % 2, width - 1, 2):
            low = np.minimum(lanes[k], lanes[k + 1])
            np.maximum(lanes[k], lanes[k + 1], out=lanes[k + 1])
            lanes[k] = low
    median = lanes[pad]
    nan_count = sum(missing[..., k : k + n].astype(np.int8) for k in range(width))
    median[nan_count > pad] = np.nan
    return median


def softmax(x: np.ndarray) -> np.ndarray:
    """softmax over the last axis, float32."""
    shifted = x - x.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic alignment path (text indices, time indices) of minimum total cost; ties prefer the diagonal, then
    up, then left, as the reference's loop does. The compiled fill (csrc/timing.c) where it was built, else NumPy's."""
    n, m = cost.shape
    library = _timing_library()
    if library is None:
        return _backtrace(_dtw_trace_numpy(cost))
    x = np.ascontiguousarray(cost, dtype=np.float64)
    acc = np.empty((n + 1, m + 1), np.float32)
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    library.dtw_fill(x.ctypes.data, n, m, acc.ctypes.data, trace.ctypes.data)
    return _backtrace(trace)


def _dtw_trace_numpy(cost: np.ndarray) -> np.ndarray:
    """The DTW's trace (0 diagonal, 1 up, 2 left), filled one anti-diagonal at a time (vectorised)."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf, dtype=np.float32)  # float32 like the reference, so ties match
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    acc[0, 0] = 0.0
    x = cost.astype(np.float64)
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        best = np.where(t == 0, c0, np.where(t == 1, c1, c2))
        acc[i, j] = x[i - 1, j - 1] + best
        trace[i, j] = t
    return trace


@functools.cache
def _timing_library() -> ctypes.CDLL | None:
    """csrc/timing.c as built at install (optional), or None."""
    matrix = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    return compiled_library("tingxie._timing", {"dtw_fill": (matrix, ctypes.c_int), "median7_rows": (matrix, ctypes.c_int)})


def _backtrace(trace: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i, j = trace.shape[0] - 1, trace.shape[1] - 1
    trace[0, :] = 2
    trace[:, 0] = 1
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        elif step == 2:
            j -= 1
        else:
            raise ValueError("corrupt DTW trace")
    arr = np.array(path[::-1])
    return arr[:, 0], arr[:, 1]


def find_alignment(
    engine: Engine,
    tokenizer: Tokenizer,
    text_tokens: list[int],
    audio_features: Features,
    num_frames: int,
    alignment_heads: list[tuple[int, int]],
    *,
    medfilt_width: int = 7,
    qk_scale: float = 1.0,
) -> list[WordTiming]:
    """Per word: its tokens, start/end seconds within the window, and mean token probability."""
    if not text_tokens:
        return []
    sot = list(tokenizer.sot_sequence)
    tokens = np.asarray([[*sot, tokenizer.no_timestamps, *text_tokens, tokenizer.eot]], np.int64)
    logprobs, scores = engine.alignment_scores(tokens, audio_features, alignment_heads, tokenizer.eot)
    # each text token's probability among the text tokens (position len(sot), the no-timestamps token, predicts the first)
    token_probs = np.exp(logprobs[len(sot) : len(sot) + len(text_tokens)]).tolist()

    weights = softmax(scores[:, :, : num_frames // 2].astype(np.float32) * np.float32(qk_scale))
    mean = weights.mean(axis=-2, keepdims=True)
    std = weights.std(axis=-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant row (std 0) gives nan there, as the reference's
        weights -= mean
        weights /= std
        weights = median_filter(weights, medfilt_width)
    matrix = weights.mean(axis=0)[len(sot) : -1]
    text_indices, time_indices = dtw(-matrix.astype(np.float64))

    words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    starts, ends = jump_times[boundaries[:-1]], jump_times[boundaries[1:]]
    probs = [float(np.mean(token_probs[i:j])) for i, j in zip(boundaries[:-1], boundaries[1:])]
    return [WordTiming(w, t, float(s), float(e), p) for w, t, s, e, p in zip(words, word_tokens, starts, ends, probs)]


def merge_punctuations(alignment: list[WordTiming], prepended: str, appended: str) -> None:
    """Attach opening punctuation to the next word and closing punctuation to the previous one."""
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        previous, following = alignment[i], alignment[j]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            following.word = previous.word + following.word
            following.tokens = previous.tokens + following.tokens
            previous.word, previous.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        previous, following = alignment[i], alignment[j]
        if not previous.word.endswith(" ") and following.word in appended:
            previous.word = previous.word + following.word
            previous.tokens = previous.tokens + following.tokens
            following.word, following.tokens = "", []
        else:
            i = j
        j += 1


def _clamp_long_words(alignment: list[WordTiming]) -> tuple[float, float]:
    """Cap implausibly long words next to sentence ends; returns (median, max) word duration."""
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    longest = median * 2
    if len(durations):
        marks = ".。!！?？"
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > longest:
                if alignment[i].word in marks:
                    alignment[i].end = alignment[i].start + longest
                elif alignment[i - 1].word in marks:
                    alignment[i].start = alignment[i].end - longest
    return median, longest


def add_word_timestamps(
    *,
    segments: list[dict],
    engine: Engine,
    tokenizer: Tokenizer,
    audio_features: Features,
    num_frames: int,
    alignment_heads: list[tuple[int, int]],
    prepend_punctuations: str,
    append_punctuations: str,
    last_speech_timestamp: float,
) -> None:
    """Fill ``segment['words']`` for the segments of one window and adjust their edges to the words."""
    if not segments:
        return
    per_segment = [[t for t in s["tokens"] if t < tokenizer.eot] for s in segments]
    text_tokens = [t for tokens in per_segment for t in tokens]
    alignment = find_alignment(engine, tokenizer, text_tokens, audio_features, num_frames, alignment_heads)
    median, longest = _clamp_long_words(alignment)
    merge_punctuations(alignment, prepend_punctuations, append_punctuations)

    time_offset = segments[0]["seek"] / 100.0
    word_index = 0
    for segment, tokens in zip(segments, per_segment):
        saved, words = 0, []
        while word_index < len(alignment) and saved < len(tokens):
            timing = alignment[word_index]
            if timing.word:
                words.append(
                    {
                        "word": timing.word,
                        "start": round(time_offset + timing.start, 2),
                        "end": round(time_offset + timing.end, 2),
                        "probability": timing.probability,
                    }
                )
            saved += len(timing.tokens)
            word_index += 1
        if words:
            last_speech_timestamp = _fix_edges(segment, words, median, longest, last_speech_timestamp)
        segment["words"] = words


def _fix_edges(segment: dict, words: list[dict], median: float, longest: float, last_speech: float) -> float:
    """Shorten a first word that swallowed a pause, then reconcile segment and word boundaries."""
    first = words[0]
    if first["end"] - last_speech > median * 4 and (
        first["end"] - first["start"] > longest or (len(words) > 1 and words[1]["end"] - first["start"] > longest * 2)
    ):
        if len(words) > 1 and words[1]["end"] - words[1]["start"] > longest:
            boundary = max(words[1]["end"] / 2, words[1]["end"] - longest)
            first["end"] = words[1]["start"] = boundary
        first["start"] = max(0, first["end"] - longest)
    if segment["start"] < first["end"] and segment["start"] - 0.5 > first["start"]:
        first["start"] = max(0, min(first["end"] - median, segment["start"]))
    else:
        segment["start"] = first["start"]
    last = words[-1]
    if segment["end"] > last["start"] and segment["end"] + 0.5 < last["end"]:
        last["end"] = max(last["start"] + median, segment["end"])
    else:
        segment["end"] = last["end"]
    return segment["end"]
