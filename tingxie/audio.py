"""Audio in: decode any file ffmpeg knows to 16 kHz mono float32 (whole, or as a stream of chunks), and the
constants of Whisper's windows. The log-mel spectrogram is ``tingxie.mel``.

Decoding goes through PyAV (the ffmpeg libraries) and reproduces what the reference did with the ffmpeg CLI
(``-ac 1 -ar 16000 -f s16le``): the same swr downmix and resampler, the same 16-bit quantisation.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

import numpy as np

if TYPE_CHECKING:  # torch is loaded only by the PyTorch path; the ONNX Runtime path runs on NumPy
    pass

from .errors import AudioDecodeError

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # the encoder's second convolution has stride 2
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 10 ms per mel frame
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 20 ms per audio token

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray]


# --------------------------------------------------------------------------------------------- decoding


class AudioTooLongError(AudioDecodeError):
    """The audio is longer than the caller's limit: declared so by its container, or found so while decoding."""

    def __init__(self, message: str, limit_seconds: float) -> None:
        super().__init__(message)
        self.limit_seconds = limit_seconds


def decode_audio(
    source: AudioSource, sampling_rate: int = SAMPLE_RATE, *, max_seconds: float | None = None, interrupt: Callable[[], None] | None = None
) -> np.ndarray:
    """Decode ``source`` to a mono float32 waveform in [-1, 1] at ``sampling_rate`` Hz.

    ``source`` may be a path (str or PathLike), the bytes of a file, a binary file object, or a NumPy array.
    Files may be in any container or codec ffmpeg decodes (wav, flac, mp3, ogg/opus, m4a/aac, the audio track
    of mp4/mkv/webm ...); the first audio stream is downmixed to mono and resampled with ffmpeg's default
    resampler, then quantised to 16 bits exactly as the reference's ``ffmpeg -f s16le`` pipe did.

    An array is taken as audio already at ``sampling_rate``: it is not resampled. Integer arrays are scaled
    to [-1, 1] (int16 by 1/32768, int32 by 1/2**31, uint8 as 8-bit PCM centred on 128). A 2-D array is
    downmixed by averaging its channels, the channel axis being its *shorter* axis, so both
    ``(channels, samples)`` and ``(samples, channels)`` work.

    ``max_seconds`` bounds the decoded length: a file whose container declares more is refused before any
    decoding, and decoding stops as soon as the output passes the limit (a header that lies is caught there),
    so memory never grows past the limit's worth of samples. ``interrupt`` is called after every packet; an
    exception it raises stops the decoding (a server cancels the work of a client that left).

    A file that decodes to zero samples gives an empty array; whether that is an error is the caller's call.

    Raises:
        AudioDecodeError: the file does not exist or is empty, ffmpeg cannot decode it, or it has no audio stream.
        AudioTooLongError: the audio is longer than ``max_seconds``.
    """
    if isinstance(source, np.ndarray) or _is_tensor(source):
        array = source if isinstance(source, np.ndarray) else source.detach().cpu().numpy()
        samples = _array_to_mono_float(array)
        if max_seconds is not None and samples.size > _limit_samples(max_seconds, sampling_rate):
            raise AudioTooLongError(
                f"the audio is {samples.size / sampling_rate:.1f} s long, over the limit of {format_duration(max_seconds)}", max_seconds
            )
        return samples
    name, opened = _open_source(source)
    with _audio_stream(opened, name) as (container, stream):
        _check_declared_duration(container, stream, name, max_seconds)
        expected = _expected_samples(container, stream, sampling_rate)
        limit = None if max_seconds is None else _limit_samples(max_seconds, sampling_rate)
        if limit is not None:
            expected = min(expected, limit)
        buffer = _GrowingBuffer(expected, limit)
        for chunk in _s16_chunks(container, stream, name, sampling_rate, max_seconds, interrupt):
            buffer.append_s16(chunk)
    return buffer.finish()


def iter_audio(
    source: AudioSource, chunk_seconds: float = CHUNK_LENGTH, sampling_rate: int = SAMPLE_RATE, *, max_seconds: float | None = None,
    interrupt: Callable[[], None] | None = None,
) -> Iterator[np.ndarray]:
    """The audio of ``source`` as a stream of float32 chunks of ``chunk_seconds`` each (the last one shorter).

    The same samples as :func:`decode_audio` gives, read packet by packet: memory stays at about one chunk
    whatever the length of the file. ``max_seconds`` and ``interrupt`` work as there (the duration declared
    first, then while decoding). Stopping the iteration closes the file.
    """
    chunk = int(round(chunk_seconds * sampling_rate))
    if chunk < 1:
        raise ValueError(f"chunk_seconds must give at least one sample, not {chunk_seconds}")
    if isinstance(source, np.ndarray) or _is_tensor(source):
        samples = decode_audio(source, sampling_rate, max_seconds=max_seconds)
        for start in range(0, samples.size, chunk):
            yield samples[start : start + chunk]
        return
    name, opened = _open_source(source)
    with _audio_stream(opened, name) as (container, stream):
        _check_declared_duration(container, stream, name, max_seconds)
        pending: list[np.ndarray] = []
        held = 0
        for piece in _s16_chunks(container, stream, name, sampling_rate, max_seconds, interrupt):
            pending.append(piece.reshape(-1))
            held += piece.size
            while held >= chunk:
                joined = np.concatenate(pending)
                yield _s16_to_float(joined[:chunk])
                rest = joined[chunk:]
                pending, held = ([rest] if rest.size else []), rest.size
        if held:
            yield _s16_to_float(np.concatenate(pending))


def _s16_to_float(chunk: np.ndarray) -> np.ndarray:
    return np.multiply(chunk, np.float32(1.0 / 32768.0), dtype=np.float32)  # exact: a power of two


def format_duration(seconds: float) -> str:
    """A limit as people say it: 30 s, 10 min, 3 h, 1.5 h."""
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _limit_samples(max_seconds: float, sampling_rate: int) -> int:
    return int(max_seconds * sampling_rate)


load_audio = decode_audio


def _array_to_mono_float(array: np.ndarray) -> np.ndarray:
    """An in-memory waveform as mono float32: integer PCM scaled, 2-D downmixed along its shorter axis."""
    if array.ndim == 2:
        channel_axis = 0 if array.shape[0] <= array.shape[1] else 1
        array = _pcm_to_float(array).mean(axis=channel_axis, dtype=np.float32)
    elif array.ndim != 1:
        raise AudioDecodeError(f"an audio array must be 1-D (samples) or 2-D (channels and samples), not {array.ndim}-D")
    return np.ascontiguousarray(_pcm_to_float(array), dtype=np.float32)


def _pcm_to_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if array.dtype == np.int32:
        return (array.astype(np.float64) / 2147483648.0).astype(np.float32)
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise AudioDecodeError(f"an audio array must hold floats or int16/int32/uint8 PCM, not {array.dtype}")


def _open_source(source: Any) -> tuple[str, Any]:
    """What to hand to ``av.open`` and how to name the source in messages; catches missing and empty input early."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioDecodeError(f"no such file: {path}")
        if path.is_dir():
            raise AudioDecodeError(f"{path} is a directory, not an audio file")
        try:
            size = path.stat().st_size
        except OSError as e:
            raise AudioDecodeError(f"{path} could not be read: {e.strerror or e}") from e
        if size == 0:
            raise AudioDecodeError(f"{path} is empty (0 bytes)")
        return str(path), str(path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioDecodeError("the audio bytes are empty (0 bytes)")
        return "the audio bytes", io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "the audio file object"))
        if _remaining_bytes(source) == 0:
            raise AudioDecodeError(f"{name} is empty (0 bytes)")
        return name, source
    raise AudioDecodeError(f"cannot read audio from a {type(source).__name__}; give a path, bytes, a binary file object or an array")


def _remaining_bytes(fileobj: Any) -> int | None:
    """Bytes left to read in a seekable file object (None where it cannot tell without consuming it)."""
    try:
        if not fileobj.seekable():
            return None
        here = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(here)
        return end - here
    except (AttributeError, OSError, ValueError):
        return None


@contextmanager
def _audio_stream(opened: Any, name: str) -> Iterator[tuple[Any, Any]]:
    """The open container and its first audio stream; every failure to open is an AudioDecodeError."""
    import av  # the ffmpeg libraries are heavy; load them only when a file is decoded

    try:
        container = av.open(opened, mode="r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise AudioDecodeError(f"{name} could not be decoded as audio: {_reason(e)}") from e
    except OSError as e:
        raise AudioDecodeError(f"{name} could not be read: {e.strerror or e}") from e

    with container:
        if container.format.name == "tty":
            # ffmpeg opens any text file as "tty" (ANSI art video); call it what it is
            raise AudioDecodeError(f"{name} could not be decoded as audio: it is a text file, not audio or video")
        if not container.streams.audio:
            raise AudioDecodeError(f"{name} has no audio stream")
        yield container, container.streams.audio[0]


def _check_declared_duration(container: Any, stream: Any, name: str, max_seconds: float | None) -> None:
    """Refuse, before decoding anything, a file whose container says it is longer than the limit."""
    if max_seconds is None:
        return
    declared = _declared_seconds(container, stream)
    if declared is not None and declared > max_seconds + 1.0:  # a second of slack for the container's rounding
        raise AudioTooLongError(
            f"{name} is {format_duration(round(declared, 1))} long (as its header declares), over the limit of {format_duration(max_seconds)}",
            max_seconds,
        )


def _s16_chunks(
    container: Any, stream: Any, name: str, sampling_rate: int, max_seconds: float | None, interrupt: Callable[[], None] | None = None
) -> Iterator[np.ndarray]:
    """The first audio stream as int16 mono arrays at ``sampling_rate``, one per resampled frame; stops at the limit."""
    import av

    # s16 like the reference's `ffmpeg -f s16le` pipe; swr also normalises the downmix matrix for integer output
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sampling_rate)
    limit = None if max_seconds is None else _limit_samples(max_seconds, sampling_rate)
    total = 0
    first_error: Exception | None = None

    def counted(out: Any) -> np.ndarray:
        nonlocal total
        array = out.to_ndarray()
        total += array.size
        if limit is not None and total > limit:
            # what the header said did not hold (or said nothing): stop here, before holding any more
            raise AudioTooLongError(f"{name} is longer than the limit of {format_duration(max_seconds)} (decoding stopped there)", max_seconds)
        return array

    try:
        for packet in container.demux(stream):
            if interrupt is not None:
                interrupt()
            try:
                frames = packet.decode()
            except av.InvalidDataError as e:
                # ffmpeg's CLI logs a corrupt packet and goes on; so do we
                first_error = first_error or e
                continue
            for frame in frames:
                for piece in _bounded_frames(frame):
                    for out in resampler.resample(piece):
                        yield counted(out)
        for out in resampler.resample(None):  # flush what the resampler still holds
            yield counted(out)
    except av.FFmpegError as e:
        raise AudioDecodeError(f"{name} could not be decoded as audio: {_reason(e)}") from e
    if total == 0 and first_error is not None:
        raise AudioDecodeError(f"{name} could not be decoded as audio: {_reason(first_error)}")


# Longest stretch of audio resampled in one call: a 1-Hz file's frame holds hours, whose output in one piece would
# overshoot the limit by that much and hold the interpreter while it is made.
MAX_FRAME_SECONDS = 30.0


def _bounded_frames(frame: Any) -> Iterator[Any]:
    """``frame`` itself, or, when it lasts over MAX_FRAME_SECONDS, its samples cut into frames that don't."""
    import av

    if frame.samples <= MAX_FRAME_SECONDS * frame.sample_rate:
        yield frame
        return
    data = frame.to_ndarray()
    planar = frame.format.is_planar
    step = max(1, int(MAX_FRAME_SECONDS * frame.sample_rate))
    for start in range(0, frame.samples, step):
        part = data[:, start : start + step] if planar else data[:, start * len(frame.layout.channels) : (start + step) * len(frame.layout.channels)]
        piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format=frame.format.name, layout=frame.layout.name)
        piece.sample_rate = frame.sample_rate
        yield piece


def _reason(error: Exception) -> str:
    """ffmpeg's own words for an error, without PyAV's errno prefix."""
    message = getattr(error, "strerror", None) or str(error)
    return str(message).rstrip(".")


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """The duration the container states for the stream (or for itself), None where it states none."""
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def _expected_samples(container: Any, stream: Any, sampling_rate: int) -> int:
    """A first guess at the decoded length from the container's stated duration (0 where none is stated)."""
    seconds = _declared_seconds(container, stream)
    if seconds is None:
        return 0
    # a second of slack for rounding; capped because a streamed WAV header may claim gigabytes it does not hold
    return min(int(seconds * sampling_rate) + sampling_rate, _MAX_INITIAL_SAMPLES)


_MAX_INITIAL_SAMPLES = 1 << 28  # about 4.6 hours at 16 kHz; longer audio grows the buffer by doubling


class _GrowingBuffer:
    """A float32 array grown by doubling, so a long decode needs about one copy of its output, not several."""

    def __init__(self, capacity: int, limit: int | None = None) -> None:
        self._data = np.zeros(max(capacity, 1 << 16), dtype=np.float32)  # calloc: pages count only once written
        self._limit = limit  # never grown past this: the decoder stops there
        self.size = 0

    def append_s16(self, chunk: np.ndarray) -> None:
        chunk = chunk.reshape(-1)
        end = self.size + chunk.size
        if end > self._data.size:
            capacity = max(end, 2 * self._data.size if self._limit is None else min(2 * self._data.size, self._limit))
            # a fresh array and a copy, which NumPy makes without holding the GIL (ndarray.resize would zero the new
            # half with it held: 0.7 s of a server's event loop for a 1-GB buffer)
            grown = np.empty(capacity, dtype=np.float32)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        np.multiply(chunk, np.float32(1.0 / 32768.0), out=self._data[self.size : end])  # exact: a power of two
        self.size = end

    def finish(self) -> np.ndarray:
        self._data.resize(self.size, refcheck=False)  # give back the unused tail without copying
        data, self._data = self._data, np.zeros(0, dtype=np.float32)
        return data


# --------------------------------------------------------------------------------------------- padding


def pad_or_trim(array: Any, length: int = N_SAMPLES, *, axis: int = -1) -> Any:
    """Zero-pad or cut ``array`` (NumPy array or torch tensor) along ``axis`` to exactly ``length`` entries."""
    current = array.shape[axis]
    if _is_tensor(array):
        import torch.nn.functional as F

        if current > length:
            array = array.narrow(axis, 0, length)
        elif current < length:
            dim = axis % array.ndim
            widths = [0, 0] * (array.ndim - 1 - dim) + [0, length - current]  # F.pad lists the last axis first
            array = F.pad(array, widths)
        return array
    if current > length:
        array = array.take(np.arange(length), axis=axis)
    elif current < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - current)
        array = np.pad(array, widths)
    return array


def _is_tensor(value: Any) -> bool:
    # a tensor exists only once torch is loaded; another thread may be importing it right now (half initialised)
    is_tensor = getattr(sys.modules.get("torch"), "is_tensor", None)
    return is_tensor is not None and is_tensor(value)
