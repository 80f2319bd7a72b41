"""Audio arriving in pieces: PCM16 bytes to float32, any sample rate to 16 kHz, a file played at real-time speed, a microphone."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import numpy as np

from ..errors import OptionError, TingxieError

SAMPLE_RATE = 16000
MIN_RATE, MAX_RATE = 8000, 192000


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian signed 16-bit mono PCM to float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def check_rate(rate: int) -> int:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise OptionError(f"sample_rate must be between {MIN_RATE} and {MAX_RATE} Hz, got {rate}")
    return rate


class Resampler:
    """Chunk-by-chunk resampling to 16 kHz with ffmpeg's resampler (PyAV), its filter state kept between chunks."""

    def __init__(self, rate: int) -> None:
        self.rate = check_rate(rate)
        self._resampler = None
        if rate != SAMPLE_RATE:
            import av

            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._pts = 0

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if self._resampler is None or len(samples) == 0:
            return np.asarray(samples, dtype=np.float32)
        import av

        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32)[None], format="flt", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(samples)
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """The samples the resampler still holds (at the end of the stream)."""
        return np.zeros(0, dtype=np.float32) if self._resampler is None else self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, dtype=np.float32)


def realtime_chunks(audio: np.ndarray, chunk_s: float = 0.1, speed: float = 1.0) -> Iterator[np.ndarray]:
    """``audio`` as a microphone would deliver it: each yield is everything that has 'arrived' since the last one
    (at least one chunk; more when the consumer was busy), at ``speed`` times real time."""
    chunk = max(1, int(chunk_s * SAMPLE_RATE))
    started = time.monotonic()
    sent = 0
    while sent < len(audio):
        arrived = min(len(audio), int((time.monotonic() - started) * speed * SAMPLE_RATE) // chunk * chunk)
        if arrived <= sent:
            time.sleep(max(0.0, (sent + chunk) / (SAMPLE_RATE * speed) - (time.monotonic() - started)))
            continue
        yield audio[sent:arrived]
        sent = arrived


class MicrophoneError(TingxieError):
    """No microphone could be opened (sounddevice or PortAudio missing, no input device)."""


def microphone_chunks(device: str | int | None = None, chunk_s: float = 0.1) -> Iterator[np.ndarray]:
    """16 kHz mono float32 from an input device (sounddevice), each yield everything recorded since the last."""
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the package is there but the PortAudio library is not
        raise MicrophoneError(f"the microphone needs sounddevice and PortAudio (pip install sounddevice; apt-get install libportaudio2): {e}") from e
    inbox: queue.Queue[np.ndarray] = queue.Queue()
    try:
        info = sounddevice.query_devices(device, "input")
    except (ValueError, sounddevice.PortAudioError) as e:
        raise MicrophoneError(f"no input device {device if device is not None else '(default)'}: {e}") from e
    rate = SAMPLE_RATE
    try:
        sounddevice.check_input_settings(device=device, channels=1, dtype="float32", samplerate=SAMPLE_RATE)
    except Exception:
        rate = int(info["default_samplerate"])  # the device can't record at 16 kHz: resample its own rate
    resample = Resampler(rate)

    def callback(indata, frames, time_info, status) -> None:
        inbox.put(indata[:, 0].copy())

    with sounddevice.InputStream(device=device, channels=1, dtype="float32", samplerate=rate, blocksize=int(chunk_s * rate), callback=callback):
        while True:
            parts = [inbox.get()]
            while not inbox.empty():
                parts.append(inbox.get_nowait())
            yield resample(np.concatenate(parts))
