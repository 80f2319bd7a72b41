"""Radio-like audio made at test time from the shared recordings (issue 23): what air-to-ground or walkie-talkie
speech sounds like to Whisper. NumPy only: band-pass 300-3000 Hz (FFT mask), a compressor, noise at a set SNR and
dropouts; seeded, so every run hears the same."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000


def band_pass(audio: np.ndarray, low: float = 300.0, high: float = 3000.0) -> np.ndarray:
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(audio.size, 1.0 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, audio.size).astype(np.float32)


def compress(audio: np.ndarray, drive: float = 4.0) -> np.ndarray:
    """A hard-working broadcast compressor: soft clipping after gain, back to the input's peak."""
    peak = float(np.abs(audio).max()) or 1.0
    return (np.tanh(drive * audio / peak) / np.tanh(drive) * peak).astype(np.float32)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise band-limited like the channel, at ``snr_db`` below the speech's power (its louder half)."""
    loud = np.sort(audio**2)[audio.size // 2 :]
    noise = band_pass(rng.standard_normal(audio.size).astype(np.float32))
    noise *= np.sqrt(loud.mean() / (noise**2).mean() / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


def dropouts(audio: np.ndarray, rng: np.random.Generator, per_second: float = 0.15, length_s: tuple[float, float] = (0.05, 0.25)) -> np.ndarray:
    """Short losses of the carrier: the signal gone for 50-250 ms, about once every seven seconds."""
    out = audio.copy()
    for _ in range(int(per_second * audio.size / SAMPLE_RATE)):
        start = int(rng.integers(0, audio.size))
        out[start : start + int(rng.uniform(*length_s) * SAMPLE_RATE)] = 0
    return out


def radio_like(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(dropouts(add_noise(compress(band_pass(audio)), snr_db, rng), rng), -1, 1).astype(np.float32)
