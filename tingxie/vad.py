"""Voice activity detection with the Silero VAD model (MIT), shipped in the package as ``assets/silero_vad.onnx``
(the file the ``silero-vad`` PyPI package ships, whose own dependencies include PyTorch).

The ONNX file runs on onnxruntime with its recurrent
state passed in and out explicitly, so one loaded model serves any number of streams and threads:

    >>> vad = load_vad()
    >>> speech_timestamps(audio, VadOptions(), vad)          # [(start_sample, end_sample), ...]
    >>> stream = vad.stream(); stream.accept(chunk)          # probabilities as audio arrives

The model scores windows of 512 samples (32 ms at 16 kHz), each seen with the 64 samples before it.
Nothing here downloads anything, and the ``silero_vad`` Python package is never imported (its import
sets torch's global thread count to 1).
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OptionError, TingxieError

SAMPLE_RATE = 16000
WINDOW = 512  # samples the model scores at a time at 16 kHz
CONTEXT = 64  # samples of the previous window the model sees in front of each window
STATE_SHAPE = (2, 128)  # the LSTM's (h, c) per stream; the batch axis sits between them
MODEL_FILE = "silero_vad.onnx"


class VadUnavailableError(TingxieError):
    """The Silero VAD model or onnxruntime is not installed."""


@dataclass(frozen=True)
class VadOptions:
    """How per-window speech probabilities become speech regions (defaults as the Silero authors recommend)."""

    threshold: float = 0.5  # a window at or above this is speech
    neg_threshold: float | None = None  # inside speech, a window below this is silence (default: threshold - 0.15)
    min_speech_ms: int = 250  # shorter regions are dropped
    min_silence_ms: int = 100  # a silence must last this long to end a region
    speech_pad_ms: int = 30  # each region grows by this much on both sides
    max_speech_s: float = math.inf  # longer regions are split, at their longest inner pause when there is one

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise OptionError(f"VAD threshold must be between 0 and 1, got {self.threshold}")
        if self.neg_threshold is not None and not 0 <= self.neg_threshold <= self.threshold:
            raise OptionError(f"VAD neg_threshold must be between 0 and threshold ({self.threshold}), got {self.neg_threshold}")
        for name in ("min_speech_ms", "min_silence_ms", "speech_pad_ms"):
            if getattr(self, name) < 0:
                raise OptionError(f"VAD {name} must be >= 0, got {getattr(self, name)}")
        if not self.max_speech_s > 0:
            raise OptionError(f"VAD max_speech_s must be > 0, got {self.max_speech_s}")

    @property
    def exit_threshold(self) -> float:
        return self.neg_threshold if self.neg_threshold is not None else max(self.threshold - 0.15, 0.01)


def model_path() -> Path:
    """The Silero VAD model shipped in the package."""
    from importlib.resources import files

    path = Path(str(files("tingxie") / "assets" / MODEL_FILE))
    if not path.is_file():
        raise VadUnavailableError(f"the package has no {MODEL_FILE} at {path}; reinstall tingxie-asr")
    return path


class SileroVad:
    """The loaded model. Stateless itself (state lives in ``VadStream``), so it is safe to share between threads."""

    def __init__(self, path: str | Path | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as e:
            raise VadUnavailableError("voice activity detection needs onnxruntime: pip install tingxie-asr") from e
        opts = onnxruntime.SessionOptions()
        # the model is tiny: one thread per call is fastest, and leaves the cores to Whisper
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.path = Path(path) if path is not None else model_path()
        self._session = onnxruntime.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def step(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score a batch of windows: ``windows`` (batch, CONTEXT + WINDOW) float32, ``state`` (2, batch, 128).

        Returns (probabilities (batch,), next state).
        """
        out, next_state = self._session.run(None, {"input": windows, "state": state, "sr": self._sr})
        return out[:, 0], next_state

    def stream(self) -> VadStream:
        """A fresh incremental scorer for one audio stream."""
        return VadStream(self)

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of every 512-sample window of ``audio`` (16 kHz mono); the last window is zero-padded."""
        return self.probabilities_batch([audio])[0]

    def probabilities_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``probabilities`` of several recordings at once, scored in lock-step batches (faster than one by one)."""
        lengths = [math.ceil(len(a) / WINDOW) for a in audios]
        steps = max(lengths, default=0)
        padded = np.zeros((len(audios), CONTEXT + steps * WINDOW), dtype=np.float32)
        for i, a in enumerate(audios):
            padded[i, CONTEXT : CONTEXT + len(a)] = _mono_float32(a)
        state = np.zeros((STATE_SHAPE[0], len(audios), STATE_SHAPE[1]), dtype=np.float32)
        probs = np.zeros((len(audios), steps), dtype=np.float32)
        for k in range(steps):
            active = [i for i, n in enumerate(lengths) if n > k]
            windows = padded[active, k * WINDOW : (k + 1) * WINDOW + CONTEXT]
            p, next_state = self.step(windows, state[:, active])
            probs[active, k] = p
            state[:, active] = next_state
        return [probs[i, :n] for i, n in enumerate(lengths)]

    def probabilities_in_pieces(self, audio: np.ndarray, piece_windows: int = 250, warmup_windows: int = 32, threads: int = 2) -> np.ndarray:
        """``probabilities`` of a long recording, scored as pieces side by side on ``threads`` threads.

        The model's cost per window is flat above a batch of ~16 and one thread per call is its fastest, so a long
        recording is cut into pieces of ``piece_windows`` (8 s) scored in lock-step, half of them on each thread
        (on 2 cores ~0.25 -> ~0.12 s per 84 s of speech, against one pass over the recording). Each
        piece starts ``warmup_windows`` (1 s) early with fresh state and those windows' scores are dropped: the state
        has mostly settled by then (a few windows near the seams still differ from one pass over the whole recording).
        """
        from concurrent.futures import ThreadPoolExecutor

        audio = _mono_float32(audio)
        n = math.ceil(len(audio) / WINDOW)
        starts = list(range(0, n, piece_windows))
        pieces = [audio[max(0, s - warmup_windows) * WINDOW : (s + piece_windows) * WINDOW] for s in starts]
        threads = max(1, min(threads, len(pieces)))
        with ThreadPoolExecutor(threads) as pool:  # onnxruntime releases the GIL while it runs
            scored = list(pool.map(self.probabilities_batch, [pieces[i::threads] for i in range(threads)]))
        ordered = [scored[i % threads][i // threads] for i in range(len(pieces))]
        return np.concatenate([p[min(s, warmup_windows) :] for s, p in zip(starts, ordered)] or [np.zeros(0, np.float32)])[:n]


class VadStream:
    """Scores audio as it arrives: ``accept(chunk)`` returns the probabilities of the windows it completed."""

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._state = np.zeros((STATE_SHAPE[0], 1, STATE_SHAPE[1]), dtype=np.float32)
        self._pending = np.zeros(CONTEXT, dtype=np.float32)  # the context, then samples not yet scored
        self.windows_done = 0

    @property
    def samples_done(self) -> int:
        """Samples scored so far (a multiple of WINDOW)."""
        return self.windows_done * WINDOW

    def accept(self, chunk: np.ndarray) -> np.ndarray:
        self._pending = np.concatenate([self._pending, _mono_float32(chunk)])
        n = (len(self._pending) - CONTEXT) // WINDOW
        probs = np.empty(n, dtype=np.float32)
        for k in range(n):
            window = self._pending[k * WINDOW : (k + 1) * WINDOW + CONTEXT][None]
            p, self._state = self._vad.step(window, self._state)
            probs[k] = p[0]
        self._pending = self._pending[n * WINDOW :]
        self.windows_done += n
        return probs


@lru_cache(maxsize=4)
def load_vad(path: str | None = None) -> SileroVad:
    """The packaged model, loaded once per process (it holds no per-stream state)."""
    return SileroVad(path)


def speech_timestamps(audio: np.ndarray, options: VadOptions = VadOptions(), vad: SileroVad | None = None) -> list[tuple[int, int]]:
    """The speech regions of 16 kHz mono ``audio`` as (start, end) sample indices."""
    return regions_from_probabilities(speech_probabilities(audio, vad), len(audio), options)


def speech_probabilities(audio: np.ndarray, vad: SileroVad | None = None) -> np.ndarray:
    """The speech probability of each 32-ms frame of 16 kHz mono ``audio`` (scored in pieces, on two threads where
    there are two cores)."""
    return (vad or load_vad()).probabilities_in_pieces(audio, threads=min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class SpeechMap:
    """The speech regions of a recording joined end to end, and the way back from a time in the joined audio to one in
    the recording (``vad_filter``: Whisper reads the speech as one stream, without the pauses between)."""

    regions: tuple[tuple[int, int], ...]  # (start, end) samples in the recording, in order, not overlapping
    pad: int = 0  # samples of silence each region was widened by on both sides

    def join(self, audio: np.ndarray) -> np.ndarray:
        """The regions' samples end to end."""
        return np.concatenate([audio[s:e] for s, e in self.regions]) if self.regions else np.zeros(0, np.float32)

    def original_time(self, seconds: float, *, end: bool = False) -> float:
        """Where ``seconds`` of the joined audio lies in the recording. A time at a seam is the next region's start,
        or with ``end`` the previous region's end; times past the speech stay at its end."""
        if not self.regions:
            return seconds
        k = self._region_at(seconds * SAMPLE_RATE, end)
        return self._in_region(k, seconds * SAMPLE_RATE)

    def original_span(self, start: float, end: float) -> tuple[float, float]:
        """A stretch of the joined audio (a segment, a word) in the recording's times. Whisper puts a segment's edges
        loosely around a seam (tiny.en often on whole seconds): the regions it only grazes, by no more than their
        padding and a second, do not count, unless it lies in one region only."""
        if not self.regions:
            return start, end
        a, b = start * SAMPLE_RATE, end * SAMPLE_RATE
        first, last = self._region_at(a, False), max(self._region_at(b, True), self._region_at(a, False))
        graze = self.pad + SAMPLE_RATE
        while first < last and self._overlap(first, a, b) <= graze:
            first += 1
        while last > first and self._overlap(last, a, b) <= graze:
            last -= 1
        offsets = self._joined_offsets
        return self._in_region(first, max(a, offsets[first])), self._in_region(last, b)

    def _region_at(self, at: float, end: bool) -> int:
        offsets = self._joined_offsets
        k = (bisect.bisect_left(offsets, at) if end else bisect.bisect_right(offsets, at)) - 1
        return min(max(k, 0), len(self.regions) - 1)

    def _overlap(self, k: int, a: float, b: float) -> float:
        begin = self._joined_offsets[k]
        return min(b, begin + self.regions[k][1] - self.regions[k][0]) - max(a, begin)

    def _in_region(self, k: int, at: float) -> float:
        start, stop = self.regions[k]
        return round(min(start + max(at - self._joined_offsets[k], 0.0), stop) / SAMPLE_RATE, 3)

    @cached_property
    def _joined_offsets(self) -> list[int]:
        """Where each region starts in the joined audio."""
        out, at = [], 0
        for s, e in self.regions:
            out.append(at)
            at += e - s
        return out


def speech_map(audio: np.ndarray, options: VadOptions = VadOptions(), vad: SileroVad | None = None) -> SpeechMap:
    """The speech regions of 16 kHz mono ``audio`` as a :class:`SpeechMap`."""
    return SpeechMap(tuple(speech_timestamps(audio, options, vad)), pad=options.speech_pad_ms * SAMPLE_RATE // 1000)


def regions_from_probabilities(probs: Sequence[float] | np.ndarray, n_samples: int, options: VadOptions = VadOptions()) -> list[tuple[int, int]]:
    """Speech regions (start, end) in samples from per-window probabilities: hysteresis, then the length rules, then padding."""
    exit_threshold = options.exit_threshold
    min_silence = options.min_silence_ms * SAMPLE_RATE // 1000
    max_speech = math.inf if math.isinf(options.max_speech_s) else int(options.max_speech_s * SAMPLE_RATE)
    regions: list[tuple[int, int]] = []
    start: int | None = None
    silence_from: int | None = None  # where the current run of silent windows inside speech began
    pauses: list[tuple[int, int]] = []  # short pauses inside the current region: split points if it grows too long
    for k, p in enumerate(probs):
        at = k * WINDOW
        if start is None:
            if p >= options.threshold:
                start, silence_from, pauses = at, None, []
            continue
        if p >= options.threshold and silence_from is not None:
            pauses.append((silence_from, at))
            silence_from = None
        elif p < exit_threshold and silence_from is None:
            silence_from = at
        if silence_from is not None and at + WINDOW - silence_from >= min_silence:
            regions.append((start, silence_from))
            start, silence_from = None, None
        elif at + WINDOW - start > max_speech:
            start, pauses = _split_long(regions, start, at + WINDOW, pauses, max_speech)
    if start is not None:
        regions.append((start, silence_from if silence_from is not None else n_samples))
    min_speech = options.min_speech_ms * SAMPLE_RATE // 1000
    kept = [(s, min(e, n_samples)) for s, e in regions if min(e, n_samples) - s >= min_speech]
    return _pad(kept, options.speech_pad_ms * SAMPLE_RATE // 1000, n_samples)


def _split_long(regions: list[tuple[int, int]], start: int, now: int, pauses: list[tuple[int, int]], max_speech: float) -> tuple[int, list]:
    """Close an over-long region at its longest pause (or right here when it has none); returns the new start and pauses."""
    if pauses:
        pause = max(pauses, key=lambda p: p[1] - p[0])
        regions.append((start, pause[0]))
        return pause[1], [p for p in pauses if p[0] >= pause[1]]
    regions.append((start, now))
    return now, []


def _pad(regions: list[tuple[int, int]], pad: int, n_samples: int) -> list[tuple[int, int]]:
    """Grow each region by ``pad`` on both sides; where two would overlap, they meet in the middle of their gap."""
    out: list[tuple[int, int]] = []
    for i, (s, e) in enumerate(regions):
        prev_end = regions[i - 1][1] if i else None
        next_start = regions[i + 1][0] if i + 1 < len(regions) else None
        new_s = max(0, s - pad) if prev_end is None or s - prev_end >= 2 * pad else (s + prev_end) // 2
        new_e = min(n_samples, e + pad) if next_start is None or next_start - e >= 2 * pad else (e + next_start) // 2
        out.append((new_s, new_e))
    return out


def _mono_float32(audio: Any) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"VAD takes mono audio (one dimension), got shape {a.shape}")
    return a.astype(np.float32, copy=False)
