"""Where the speaker encoder looks: fixed 1.6-s windows laid over each stretch of speech the VAD found."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .features import HOP, SAMPLE_RATE, level_gain, mel_frames

WINDOW_FRAMES = 160  # 1.6 s: the length the encoder was trained on
STEP_FRAMES = 120  # 1.2 s between window starts in a long stretch of speech (0.8 s: same DER on the bench, 1/3 more windows)
CLOSE_STEP_FRAMES = 40  # 0.4 s: a small group's speech looked at again (its voice a little clearer; a few windows only)


@dataclass(frozen=True)
class EmbeddingWindow:
    """One window: the speech region it lies in and its span in the recording, in samples."""

    region: int
    start: int
    end: int

    @property
    def centre_s(self) -> float:
        return (self.start + self.end) / 2 / SAMPLE_RATE


def region_windows(begin: int, end: int, step_frames: int = STEP_FRAMES) -> list[tuple[int, int]]:
    """(first, end) frames, relative to the region, of the windows over a region of samples [begin, end): one every
    ``step_frames`` from its start, the last ending at its end; a region shorter than a window gets one of its length."""
    n = max(1, (end - begin) // HOP)
    if n <= WINDOW_FRAMES:
        return [(0, n)]
    return [(s, s + WINDOW_FRAMES) for s in range(0, n - WINDOW_FRAMES, step_frames)] + [(n - WINDOW_FRAMES, n)]


def iter_window_batches(samples: np.ndarray, regions: list[tuple[int, int]], batch_size: int = 64,
                        step_frames: int = STEP_FRAMES) -> Iterator[tuple[list[EmbeddingWindow], np.ndarray]]:
    """The windows of every region with the encoder's input for them, (n, WINDOW_FRAMES, 40), ``batch_size`` at a
    time (a long file's frames are never all in memory). Each window is brought up to the training level; a short
    one is repeated end to end to fill the window, so that it holds its own voice only."""
    windows: list[EmbeddingWindow] = []
    inputs: list[np.ndarray] = []
    for index, (begin, end) in enumerate(regions):
        mels = mel_frames(samples[begin:end])
        for first, last in region_windows(begin, end, step_frames):
            frames = mels[first:last]
            if len(frames) < WINDOW_FRAMES:
                frames = np.resize(frames, (WINDOW_FRAMES, mels.shape[1]))  # np.resize repeats the rows in order
            a, b = begin + first * HOP, min(end, begin + last * HOP)
            windows.append(EmbeddingWindow(index, a, b))
            inputs.append(frames * np.float32(level_gain(samples[a:b])))
            if len(windows) == batch_size:
                yield windows, np.stack(inputs)
                windows, inputs = [], []
    if windows:
        yield windows, np.stack(inputs)


def group_spans(windows: list[EmbeddingWindow], indices: np.ndarray) -> list[tuple[int, int]]:
    """The stretches of speech, in samples, that the windows at ``indices`` (in time order) cover, overlapping ones joined."""
    spans: list[list[int]] = []
    last_region = -1
    for i in indices.tolist():
        w = windows[i]
        if spans and w.region == last_region and w.start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], w.end)
        else:
            spans.append([w.start, w.end])
        last_region = w.region
    return [(a, b) for a, b in spans]
