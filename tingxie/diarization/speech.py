"""Where the speech is, for diarization: the packaged Silero VAD run at 8 kHz.

Silero scores 32-ms windows at 8 kHz as well as at 16 kHz; at 8 kHz a window costs about half (0.24 against
0.43 ms at a batch of 16), and speaker turns need no finer edges than the 8-kHz model gives (its regions differ from
the 16-kHz ones by ~1.7 % of the speech on bench/diarize.py's conversations). The recording is cut into pieces scored
side by side in lock-step batches, each started a second early so that its recurrent state has settled.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

RATE = 8000
WINDOW = 256  # 32 ms at 8 kHz: one window per 512 samples of the 16-kHz recording, the VAD module's grid
CONTEXT = 32  # samples of the previous window the model sees in front of each
PIECE_WINDOWS = 125  # 4 s a piece
WARMUP_WINDOWS = 32  # 1 s scored before each piece and dropped


@lru_cache(maxsize=1)
def _session():
    import onnxruntime

    from ..vad import model_path

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one thread a call is the small model's fastest; the pieces use the cores
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])


def _score(pieces: list[np.ndarray]) -> list[np.ndarray]:
    """Speech probabilities of each 8-kHz piece, the pieces in one lock-step batch."""
    session = _session()
    lengths = [math.ceil(len(p) / WINDOW) for p in pieces]
    steps = max(lengths, default=0)
    padded = np.zeros((len(pieces), CONTEXT + steps * WINDOW), dtype=np.float32)
    for i, p in enumerate(pieces):
        padded[i, CONTEXT : CONTEXT + len(p)] = p
    state = np.zeros((2, len(pieces), 128), dtype=np.float32)
    probs = np.zeros((len(pieces), steps), dtype=np.float32)
    rate = np.array(RATE, dtype=np.int64)
    for k in range(steps):
        out, state = session.run(None, {"input": padded[:, k * WINDOW : (k + 1) * WINDOW + CONTEXT], "state": state, "sr": rate})
        probs[:, k] = out[:, 0]
    return [probs[i, :n] for i, n in enumerate(lengths)]


def speech_probabilities(samples: np.ndarray, threads: int = 0) -> np.ndarray:
    """One speech probability per 512 samples of 16 kHz mono ``samples`` (the grid of ``tingxie.vad``), scored on
    ``threads`` threads (0: up to two, one per core; the same probabilities whatever the count)."""
    from scipy.signal import resample_poly

    audio = resample_poly(np.asarray(samples, dtype=np.float32), 1, 2).astype(np.float32)
    n = math.ceil(len(audio) / WINDOW)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    starts = list(range(0, n, PIECE_WINDOWS))
    pieces = [audio[max(0, s - WARMUP_WINDOWS) * WINDOW : (s + PIECE_WINDOWS) * WINDOW] for s in starts]
    threads = max(1, min(threads or min(2, os.cpu_count() or 1), len(pieces)))
    if threads == 1:
        scored = [_score(pieces)]
    else:
        with ThreadPoolExecutor(threads) as pool:  # onnxruntime releases the GIL while it runs
            scored = list(pool.map(_score, [pieces[i::threads] for i in range(threads)]))
    ordered = [scored[i % threads][i // threads] for i in range(len(pieces))]
    return np.concatenate([p[min(s, WARMUP_WINDOWS) :] for s, p in zip(starts, ordered)])[:n]


def speech_regions(samples: np.ndarray, threshold: float = 0.5, min_silence_ms: int = 300, threads: int = 0) -> list[tuple[int, int]]:
    """The speech regions of 16 kHz mono ``samples`` as (start, end) sample indices."""
    from ..vad import VadOptions, regions_from_probabilities

    return regions_from_probabilities(speech_probabilities(samples, threads), len(samples), VadOptions(threshold=threshold, min_silence_ms=min_silence_ms))
