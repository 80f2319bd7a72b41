"""Log-mel windows of a recording of any length, in bounded memory: what the long-form loop reads.

Whisper's log-mel floors every frame at 8 below the maximum of the *whole* input, so a window's values depend on
all of the audio. A :class:`StreamedMel` reads its audio twice: once to find that maximum (and the length and peak),
then again, window by window, as the loop's seek moves forward. Both passes compute the engine's own log-mel
blocks (``tingxie.mel.NumpyMelFrontEnd`` / ``TorchMelFrontEnd``) on the same grid of frames as the whole-signal
computation, from the same samples, so every window equals the slice of the whole log-mel exactly.

The audio comes from a file read by PyAV packet by packet (:class:`AudioFile`), or from samples already in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .audio import HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES, SAMPLE_RATE, decode_audio, iter_audio
from .errors import AudioDecodeError

# seconds of audio per chunk read from a file: about 2 MB of float32
CHUNK_SECONDS = 30
# the first pass keeps its blocks up to this size (~13 min of 80-bin log-mel): audio that short is read and its
# log-mel computed once; longer audio is read again, window by window, in bounded memory
KEEP_FIRST_PASS_BYTES = 24 * 2**20


class MelFrontEnd(Protocol):
    """An engine's log-mel recipe cut in two: log10 blocks on a fixed grid of frames, then the floor and scale."""

    n_mels: int
    block_frames: int

    def log10_block(self, segment: np.ndarray) -> np.ndarray: ...

    def finish(self, log10: np.ndarray, top: np.floating) -> np.ndarray: ...


class MelSource(Protocol):
    """The log-mel of some audio followed by 30 s of silence, read a window at a time."""

    n_samples: int  # samples of real audio
    peak: float  # the largest |sample|
    n_frames: int  # frames of log-mel, the silence's included

    @property
    def content_frames(self) -> int:
        """Frames of real audio (the log-mel less the 30 s of silence after it)."""
        ...

    def window(self, seek: int, n_frames: int) -> np.ndarray:
        """Frames [seek, seek + n_frames) as (n_mels, frames), fewer where the log-mel ends first."""
        ...

    def samples(self, start: int, stop: int) -> np.ndarray | None:
        """The audio's samples [start, stop) (a window's audio, for ``decoding.nonspeech``), None where not held."""
        ...


@dataclass
class AudioFile:
    """A file (path, bytes or seekable binary file object) to read as a stream, as often as needed.

    ``max_seconds`` and ``interrupt`` are :func:`tingxie.audio.decode_audio`'s: a duration limit checked from the
    header and while decoding, and a callable run after every packet whose exception stops the work.
    """

    source: Any
    max_seconds: float | None = None
    interrupt: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self._start = None  # a file object's position when given: each reading starts there
        if hasattr(self.source, "read"):
            try:
                self._start = self.source.tell() if self.source.seekable() else None
            except (AttributeError, OSError, ValueError):
                self._start = None

    @property
    def rereadable(self) -> bool:
        """Whether it can be read twice (a pipe cannot)."""
        return not hasattr(self.source, "read") or self._start is not None

    def chunks(self, seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
        """The samples from the start, ``seconds`` at a time."""
        self._rewind()
        return iter_audio(self.source, seconds, max_seconds=self.max_seconds, interrupt=self.interrupt)

    def decode(self) -> np.ndarray:
        """All the samples at once (for what needs them together: the VAD's speech map, speaker turns)."""
        self._rewind()
        return decode_audio(self.source, max_seconds=self.max_seconds, interrupt=self.interrupt)

    def _rewind(self) -> None:
        if self._start is not None:
            self.source.seek(self._start)

    def __str__(self) -> str:
        return str(self.source) if isinstance(self.source, (str, os.PathLike)) else "the audio"


class ArrayMel:
    """A whole log-mel already computed (an engine without a front end): windows are slices, and so is the audio
    where it is given."""

    def __init__(self, mel: np.ndarray, n_samples: int | None = None, peak: float = 1.0, audio: np.ndarray | None = None) -> None:
        self._mel = mel
        self._audio = audio
        self.n_frames = mel.shape[-1]
        self.n_samples = (self.n_frames - N_FRAMES) * HOP_LENGTH if n_samples is None else n_samples
        self.peak = peak

    @property
    def content_frames(self) -> int:
        return self.n_frames - N_FRAMES

    def window(self, seek: int, n_frames: int) -> np.ndarray:
        return self._mel[:, seek : seek + n_frames]

    def samples(self, start: int, stop: int) -> np.ndarray | None:
        return None if self._audio is None else self._audio[start:stop]


class StreamedMel:
    """The log-mel of audio read from ``open_chunks()`` (called once per pass), computed window by window.

    Construction is the first pass (the maximum, the length, the peak); ``window`` then reads the audio again
    from where it is, keeping only the blocks the current window covers. Windows asked for in order of their
    start cost one more reading of the audio in all; a window before the blocks held starts a fresh reading.
    """

    def __init__(self, front_end: MelFrontEnd, open_chunks: Callable[[], Iterator[np.ndarray]], audio: np.ndarray | None = None) -> None:
        self._front = front_end
        self._open = open_chunks
        self._audio = audio  # the samples when they are in memory: a window's audio is then a slice
        self.n_samples, self.peak, top = 0, 0.0, None
        kept: list[np.ndarray] | None = []
        for _, block in self._blocks(first_pass=True):
            block_top = block.max()
            top = block_top if top is None else max(top, block_top)
            if kept is not None:
                kept.append(block)
                if len(kept) * block.nbytes > KEEP_FIRST_PASS_BYTES:
                    kept = None
        self._top = top
        self.n_frames = (self.n_samples + N_SAMPLES) // HOP_LENGTH
        # short audio: the whole log-mel, finished now; windows are slices of it
        self._whole = None if kept is None else np.concatenate([front_end.finish(b, top) for b in kept], axis=1)
        self._held: dict[int, np.ndarray] = {}
        self._recent: list[tuple[int, np.ndarray]] = []  # (first sample, chunk) the window reading passed from its first block on
        self._reader: Iterator[tuple[int, np.ndarray | None]] | None = None
        self._next_block = 0
        self._wanted_from = 0

    @property
    def content_frames(self) -> int:
        return self.n_frames - N_FRAMES

    def window(self, seek: int, n_frames: int) -> np.ndarray:
        stop = min(seek + n_frames, self.n_frames)
        if stop <= seek:
            return np.zeros((self._front.n_mels, 0), np.float32)
        if self._whole is not None:
            return self._whole[:, seek:stop]
        size = self._front.block_frames
        first, last = seek // size, (stop - 1) // size
        if first not in self._held and first < self._next_block:  # behind the reading: read again from the start
            self._reader, self._next_block, self._held, self._recent = None, 0, {}, []
        for index in [k for k in self._held if k < first]:
            del self._held[index]
        self._wanted_from = first
        while self._next_block <= last:
            if self._reader is None:
                self._reader = self._blocks(first_pass=False)
            index, block = next(self._reader)
            self._next_block = index + 1
            if index >= first:
                self._held[index] = self._front.finish(block, self._top)
        blocks = [self._held[k] for k in range(first, last + 1)]
        joined = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
        return joined[:, seek - first * size : stop - first * size]

    def samples(self, start: int, stop: int) -> np.ndarray:
        """The audio's samples [start, stop) (a window's audio for a check that needs it: ``decoding.nonspeech``): a
        slice of samples in memory or of the chunks the window reading just passed, else read again from the start.
        The window reading restarts then too: a file object has one position for both."""
        if self._audio is not None:
            return self._audio[start:stop]
        stop = min(stop, self.n_samples)
        recent = self._recent
        if recent and recent[0][0] <= start and stop <= recent[-1][0] + recent[-1][1].size:
            return _cut(recent, start, stop)
        self._reader, self._next_block, self._held, self._recent = None, 0, {}, []
        return _cut(_numbered(self._open()), start, stop)

    def _blocks(self, first_pass: bool) -> Iterator[tuple[int, np.ndarray | None]]:
        """(index, log10 block) for every block of the grid, in order; the first pass counts the samples and peak."""
        size, half = self._front.block_frames, N_FFT // 2
        chunks = self._open()
        held = np.zeros(0, np.float32)  # the samples from signal index ``offset`` on
        offset = 0
        length: int | None = None if first_pass else self.n_samples  # known once the audio has ended
        ended = False
        index = 0
        while True:
            start, stop = index * size, (index + 1) * size
            if length is not None:
                stop = min(stop, (length + N_SAMPLES) // HOP_LENGTH)
                if start >= stop:
                    return
            needed = (stop - 1) * HOP_LENGTH + N_FFT - half  # the signal index after the block's last sample
            if length is not None:
                needed = min(needed, length)
            while not ended and offset + held.size < needed:
                chunk = next(chunks, None)
                if chunk is None:
                    ended = True
                    if length is None:
                        length = offset + held.size
                    elif length != offset + held.size:
                        raise AudioDecodeError("the audio changed while it was being read (it is shorter than on the first reading)")
                    break
                if first_pass:
                    self.n_samples += chunk.size
                    if chunk.size:
                        self.peak = max(self.peak, float(chunk.max()), -float(chunk.min()))
                else:
                    window_start = self._wanted_from * size * HOP_LENGTH
                    self._recent = [(b, c) for b, c in self._recent if b + c.size > window_start] + [(offset + held.size, chunk)]
                held = np.concatenate([held, chunk]) if held.size else chunk
            if length is not None:
                stop = min(stop, (length + N_SAMPLES) // HOP_LENGTH)
                if start >= stop:
                    return
            if not first_pass and index < self._wanted_from:  # a block the loop seeks past (clips): not computed
                yield index, None
            else:
                yield index, self._front.log10_block(_segment(held, offset, length, start * HOP_LENGTH - half, (stop - 1) * HOP_LENGTH + N_FFT - half))
            index += 1
            keep = max(stop * HOP_LENGTH - half, 0)  # the next block's first sample
            if keep > offset:
                held, offset = held[keep - offset :], keep

def _numbered(chunks: Iterable[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    offset = 0
    for chunk in chunks:
        yield offset, chunk
        offset += chunk.size


def _cut(pieces: Iterable[tuple[int, np.ndarray]], start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of consecutive pieces given as (index of the first sample, samples); read up to stop only."""
    parts = []
    for begin, piece in pieces:
        if begin + piece.size > start:
            parts.append(piece[max(start - begin, 0) : max(stop - begin, 0)])
        if begin + piece.size >= stop:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _segment(held: np.ndarray, offset: int, length: int | None, begin: int, end: int) -> np.ndarray:
    """Signal samples [begin, end) as the centred STFT reads them: mirrored before 0, zeros from ``length`` on
    (the silence appended is far longer than the half window, so the mirror at the far end reads only zeros)."""
    if begin >= 0 and (length is None or end <= length):
        return np.array(held[begin - offset : end - offset], dtype=np.float32)
    index = np.abs(np.arange(begin, end))
    inside = index < (length if length is not None else offset + held.size)
    values = np.zeros(end - begin, np.float32)
    values[inside] = held[index[inside] - offset]
    return values


def samples_mel(front_end: MelFrontEnd, samples: np.ndarray) -> StreamedMel:
    """The log-mel windows of samples in memory (no whole log-mel held: 3 hours of it is 330 MiB)."""
    step = CHUNK_SECONDS * SAMPLE_RATE
    return StreamedMel(front_end, lambda: (samples[i : i + step] for i in range(0, samples.size, step)), samples)


def file_mel(front_end: MelFrontEnd, audio: AudioFile) -> StreamedMel:
    """The log-mel windows of a file, decoded as a stream on each pass. Under a duration limit the file is first
    decoded alone: a header that lies about the length is caught at the limit as fast as it decodes, before any
    log-mel is computed (an hour's log-mel takes longer than its decoding)."""
    if audio.max_seconds is not None:
        for _ in audio.chunks():
            pass
    return StreamedMel(front_end, audio.chunks)


def front_end_of(engine: Any) -> MelFrontEnd | None:
    """The engine's log-mel in blocks (``mel_front_end()``), None for an engine that computes it only whole."""
    make = getattr(engine, "mel_front_end", None)
    return make() if callable(make) else None
