"""Audio in: decode any file ffmpeg knows to 16 kHz mono float32, and turn it into Whisper's log-mel spectrogram.

Decoding goes through PyAV (the ffmpeg libraries) and reproduces what the reference did with the ffmpeg CLI
(``-ac 1 -ar 16000 -f s16le``): the same swr downmix and resampler, the same 16-bit quantisation.
The log-mel recipe is the reference's, computed in blocks of frames so a long file needs bounded extra memory.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

import numpy as np

if TYPE_CHECKING:  # torch is loaded only by the PyTorch path; the ONNX Runtime path runs on NumPy
    import torch

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

# Mel frames per STFT block: 1 minute of audio, about 10 MB of complex spectrum at a time.
DEFAULT_BLOCK_FRAMES = 6000
# the NumPy STFT's block: its temporaries (frames, spectrum, power) take ~10 KiB per frame, so 500 frames keep the
# peak ~12 MiB above the output where 6,000 took ~53 MiB (all of it on the process's peak RSS), and run faster
NUMPY_BLOCK_FRAMES = 500

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


# --------------------------------------------------------------------------------------------- mel filters


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log_step = math.log(6.4) / 27.0
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * (200.0 / 3.0))


def slaney_mel_filterbank(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Triangular mel filters (n_mels, n_fft // 2 + 1), float32, with Slaney's area normalisation.

    Filter i rises from mel point i to a peak of 2 / (f[i+2] - f[i]) at point i+1 and falls to zero at point
    i+2, the n_mels + 2 points spread evenly in mel from 0 Hz to Nyquist: the bank librosa builds by default.
    """
    bins_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    area_norm = 2.0 / (edges_hz[2:] - edges_hz[:-2])  # equal area in Hz for every filter
    return (triangles * area_norm[:, None]).astype(np.float32)


@lru_cache(maxsize=None)
def mel_filters(n_mels: int, device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """The (n_mels, 201) mel filterbank Whisper uses (n_mels 80 or 128), as a tensor on ``device``."""
    import torch

    if n_mels not in (80, 128):
        raise ValueError(f"Whisper models use 80 or 128 mel bins, not {n_mels}")
    return torch.from_numpy(slaney_mel_filterbank(n_mels)).to(device)


# --------------------------------------------------------------------------------------------- log-mel


def log_mel_spectrogram(
    audio: Union[AudioSource, torch.Tensor],
    n_mels: int = 80,
    padding: int = 0,
    device: Union[str, torch.device, None] = None,
    *,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
) -> torch.Tensor:
    """Whisper's log-mel spectrogram (n_mels, n_frames) of 16 kHz mono audio, n_frames = (samples + padding) // 160.

    ``audio`` is a 1-D waveform (NumPy array or tensor) or anything :func:`decode_audio` reads (NumPy arrays
    are normalised as there: integer PCM scaled, 2-D downmixed). ``padding``
    zero samples are appended on the right. The recipe is the reference's: a centred (reflect-padded) STFT with
    a periodic Hann window of 400 and hop 160, the last frame dropped, power spectrum, mel filters, log10 of
    at least 1e-10, floor at 8 below the maximum, then (x + 4) / 4.

    The STFT runs over ``block_frames`` frames at a time, each block reading exactly the samples the
    whole-signal STFT would, so the result is the same but extra memory stays bounded for long audio.
    """
    import torch

    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, not {block_frames}")
    waveform = _waveform_tensor(audio)
    if device is not None:
        waveform = waveform.to(device)
    filters = mel_filters(n_mels, waveform.device)
    window = torch.hann_window(N_FFT, device=waveform.device)

    total = waveform.shape[0] + max(padding, 0)
    n_frames = total // HOP_LENGTH  # frames of the centred STFT, less the last one, which is dropped
    log_spec = torch.empty(n_mels, n_frames, dtype=torch.float32, device=waveform.device)
    for start in range(0, n_frames, block_frames):
        stop = min(start + block_frames, n_frames)
        segment = _padded_segment(waveform, total, start * HOP_LENGTH, (stop - 1) * HOP_LENGTH + N_FFT)
        log_spec[:, start:stop] = _torch_log10_mel(segment, filters, window)
    return _torch_floor_and_scale(log_spec, log_spec.max() if n_frames else None)


def _torch_log10_mel(segment: torch.Tensor, filters: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """log10 of the mel power of the frames of an already padded segment (frame i reads samples 160 i to 160 i + 400)."""
    import torch

    stft = torch.stft(segment, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
    power = stft.abs() ** 2
    return torch.clamp(filters @ power, min=1e-10).log10()


def _torch_floor_and_scale(log_spec: torch.Tensor, top: torch.Tensor | None) -> torch.Tensor:
    """In place: the floor at 8 below ``top`` (the whole input's maximum), then (x + 4) / 4."""
    import torch

    if top is not None:
        torch.maximum(log_spec, top - 8.0, out=log_spec)
    return log_spec.add_(4.0).div_(4.0)


def _waveform_tensor(audio: Any) -> torch.Tensor:
    """A 1-D float32 tensor of samples from a tensor, array, or anything decodable."""
    import torch

    if torch.is_tensor(audio):
        if audio.ndim != 1:
            raise ValueError(f"log_mel_spectrogram takes a 1-D waveform, not shape {tuple(audio.shape)}")
        return audio.to(torch.float32)
    if not isinstance(audio, np.ndarray):
        audio = decode_audio(audio)
    return torch.from_numpy(_array_to_mono_float(audio))


def _padded_segment(waveform: torch.Tensor, total: int, begin: int, end: int) -> torch.Tensor:
    """Samples [begin, end) of the waveform zero-padded to ``total`` and then reflect-padded by N_FFT // 2 each side.

    The index arithmetic gives torch.stft(center=True)'s padding without materialising the padded signal:
    reflection happens only at the true start and end, and mirrors repeatedly where the signal is shorter
    than the pad (as np.pad's reflect mode does).
    """
    import torch

    index = torch.from_numpy(_source_index(total, begin, end)).to(waveform.device)
    n = waveform.shape[0]
    if n == 0:
        return torch.zeros(index.shape[0], dtype=torch.float32, device=waveform.device)
    inside = index < n  # beyond the waveform lies the zero padding
    return torch.where(inside, waveform[index.clamp(max=n - 1)], torch.zeros((), device=waveform.device))


def log_mel_spectrogram_numpy(audio: AudioSource, n_mels: int = 80, padding: int = 0, *, block_frames: int = NUMPY_BLOCK_FRAMES) -> np.ndarray:
    """:func:`log_mel_spectrogram` computed with NumPy (float32 FFT), for the ONNX Runtime path that runs without torch."""
    if n_mels not in (80, 128):
        raise ValueError(f"Whisper models use 80 or 128 mel bins, not {n_mels}")
    waveform = _array_to_mono_float(audio if isinstance(audio, np.ndarray) else decode_audio(audio))
    if waveform.ndim != 1:
        raise ValueError(f"log_mel_spectrogram takes a 1-D waveform, not shape {waveform.shape}")
    filters = slaney_mel_filterbank(n_mels)
    basis = _windowed_dft_basis()
    total = waveform.shape[0] + max(padding, 0)
    n_frames = total // HOP_LENGTH
    log_spec = np.empty((n_mels, n_frames), np.float32)
    for start in range(0, n_frames, block_frames):
        stop = min(start + block_frames, n_frames)
        segment = _padded_segment_numpy(waveform, total, start * HOP_LENGTH, (stop - 1) * HOP_LENGTH + N_FFT)
        log_spec[:, start:stop] = _numpy_log10_mel(segment, filters, basis)
    return _numpy_floor_and_scale(log_spec, log_spec.max() if n_frames else None)


def _numpy_log10_mel(segment: np.ndarray, filters: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """log10 of the mel power of the frames of an already padded segment (frame i reads samples 160 i to 160 i + 400)."""
    frames = np.lib.stride_tricks.sliding_window_view(segment, N_FFT)[::HOP_LENGTH]
    spectrum = frames @ basis  # one matrix product beats an FFT per 400-sample frame
    power = spectrum[:, : N_FFT // 2 + 1] ** 2 + spectrum[:, N_FFT // 2 + 1 :] ** 2
    return np.log10(np.maximum(filters @ power.T, 1e-10))


def _numpy_floor_and_scale(log_spec: np.ndarray, top: np.floating | None) -> np.ndarray:
    """In place (two hours of log-mel is 220 MiB): the floor at 8 below ``top`` (the whole input's maximum), then (x + 4) / 4."""
    if top is not None:
        np.maximum(log_spec, top - 8.0, out=log_spec)
    log_spec += 4.0
    log_spec /= 4.0
    return log_spec


class NumpyMelFrontEnd:
    """The NumPy log-mel (the ONNX Runtime engine's) in pieces: blocks of frames on a fixed grid, then the floor.

    :func:`log_mel_spectrogram_numpy` is these steps over a whole signal; ``tingxie.mel_source`` runs them over a
    stream. Each block is computed from the same samples with the same shape either way, so the values are equal.
    """

    block_frames = NUMPY_BLOCK_FRAMES

    def __init__(self, n_mels: int) -> None:
        if n_mels not in (80, 128):
            raise ValueError(f"Whisper models use 80 or 128 mel bins, not {n_mels}")
        self.n_mels = n_mels
        self._filters = slaney_mel_filterbank(n_mels)

    def log10_block(self, segment: np.ndarray) -> np.ndarray:
        """log10 mel (n_mels, frames) of a padded segment of (frames - 1) * 160 + 400 samples."""
        return _numpy_log10_mel(segment, self._filters, _windowed_dft_basis())

    def finish(self, log10: np.ndarray, top: np.floating) -> np.ndarray:
        """Frames of ``log10_block`` as log-mel, given the whole input's maximum ``top`` (changes ``log10`` in place)."""
        return _numpy_floor_and_scale(log10, top)


class TorchMelFrontEnd(NumpyMelFrontEnd):
    """The PyTorch log-mel (the reference's STFT, the torch engine's) in the same pieces, on the CPU."""

    block_frames = DEFAULT_BLOCK_FRAMES

    def log10_block(self, segment: np.ndarray) -> np.ndarray:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(segment, dtype=np.float32))
        return _torch_log10_mel(tensor, mel_filters(self.n_mels), torch.hann_window(N_FFT)).numpy()

    def finish(self, log10: np.ndarray, top: np.floating) -> np.ndarray:
        import torch

        return _torch_floor_and_scale(torch.from_numpy(log10), torch.tensor(top, dtype=torch.float32)).numpy()


@lru_cache(maxsize=1)
def _windowed_dft_basis() -> np.ndarray:
    """(N_FFT, 2 * (N_FFT // 2 + 1)): the periodic Hann window times the real DFT's cosines, then its sines."""
    n = np.arange(N_FFT)[:, None]
    k = np.arange(N_FFT // 2 + 1)[None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)
    angle = 2 * np.pi * n * k / N_FFT
    return np.concatenate([window * np.cos(angle), -window * np.sin(angle)], axis=1).astype(np.float32)


def _source_index(total: int, begin: int, end: int) -> np.ndarray:
    """For padded positions [begin, end), the index into the zero-padded signal of length ``total`` they read."""
    index = np.arange(begin, end) - N_FFT // 2
    if total <= 1:
        return np.zeros_like(index)
    period = 2 * (total - 1)
    index = np.remainder(index, period)
    return np.where(index >= total, period - index, index)


def _padded_segment_numpy(waveform: np.ndarray, total: int, begin: int, end: int) -> np.ndarray:
    """NumPy twin of :func:`_padded_segment` (zero padding to ``total``, then reflection at the true ends)."""
    n = waveform.shape[0]
    if N_FFT // 2 <= begin and end - N_FFT // 2 <= n:  # inside the signal: a view, no index arrays (8 bytes a sample)
        return waveform[begin - N_FFT // 2 : end - N_FFT // 2].astype(np.float32, copy=False)
    index = _source_index(total, begin, end)
    if n == 0:
        return np.zeros(index.shape[0], np.float32)
    return np.where(index < n, waveform[np.minimum(index, n - 1)], np.float32(0)).astype(np.float32, copy=False)


def _is_tensor(value: Any) -> bool:
    # a tensor exists only once torch is loaded; another thread may be importing it right now (half initialised)
    is_tensor = getattr(sys.modules.get("torch"), "is_tensor", None)
    return is_tensor is not None and is_tensor(value)
