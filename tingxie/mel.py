"""Whisper's log-mel spectrogram: the Slaney mel filter bank, the reference's STFT recipe on PyTorch and the same
arithmetic on NumPy (the ONNX Runtime engine's), computed in blocks of frames on a fixed grid so a long recording
needs bounded extra memory and a stream (``tingxie.mel_source``) gets the whole-signal values bit for bit.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .audio import HOP_LENGTH, N_FFT, SAMPLE_RATE, AudioSource, _array_to_mono_float, decode_audio

if TYPE_CHECKING:  # torch is loaded only by the PyTorch path; the ONNX Runtime path runs on NumPy
    import torch

# Mel frames per STFT block: 1 minute of audio, about 10 MB of complex spectrum at a time.
DEFAULT_BLOCK_FRAMES = 6000
# the NumPy STFT's block: its temporaries (frames, spectrum, power) take ~10 KiB per frame, so 500 frames keep the
# peak ~12 MiB above the output where 6,000 took ~53 MiB (all of it on the process's peak RSS), and run faster
NUMPY_BLOCK_FRAMES = 500


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
