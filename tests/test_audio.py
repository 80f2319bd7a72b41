"""tingxie.audio: decoding real and freshly encoded files, the mel filterbank, and the log-mel against the reference."""

from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, GOLDEN, audio_path, manifest_rows, require_shared

from tingxie.audio import HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES, SAMPLE_RATE, decode_audio, load_audio, pad_or_trim
from tingxie.errors import AudioDecodeError
from tingxie.mel import log_mel_spectrogram, mel_filters


def _reference_filters() -> Path:
    """The reference's mel_filters.npz, from the openai-whisper package .ci/run installs (without its dependencies)."""
    import importlib.util

    spec = importlib.util.find_spec("whisper")  # located, never imported: its import needs numba
    assert spec is not None and spec.submodule_search_locations, (
        "openai-whisper is not installed; .ci/run installs it: pip install --no-deps openai-whisper==20250625"
    )
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "mel_filters.npz"

MEL_IDS = sorted(p.name[: -len(".mel.npy")] for p in GOLDEN.glob("*.mel.npy")) or ["(no shared golden mels)"]


# --------------------------------------------------------------------------------------------- helpers


def reference_log_mel(audio: torch.Tensor, n_mels: int = 80, padding: int = 0) -> torch.Tensor:
    """The reference recipe in one whole-signal STFT, to check the blocked implementation against."""
    audio = torch.nn.functional.pad(audio, (0, padding))
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=torch.hann_window(N_FFT), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    log_spec = torch.clamp(mel_filters(n_mels) @ power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def encode(path: Path, codec: str, rate: int, layout: str, signal: np.ndarray, video: str | None = None) -> Path:
    """Write ``signal`` (the same on every channel) to ``path`` with PyAV, optionally beside a video track."""
    import av

    channels = 2 if layout == "stereo" else 1
    with av.open(str(path), "w") as container:
        audio = container.add_stream(codec, rate=rate)
        audio.layout = layout
        picture = None
        if video is not None:
            picture = container.add_stream(video, rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 64, "yuv420p"
        block = 1024
        for start in range(0, signal.size, block):
            chunk = np.tile(signal[start : start + block], (channels, 1))
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
        if picture is not None:
            for i in range(int(signal.size / rate * 10)):
                image = np.full((64, 64, 3), (i * 20) % 256, dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, 10)
                container.mux(picture.encode(frame))
            container.mux(picture.encode(None))
    return path


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


# --------------------------------------------------------------------------------------------- golden mels


@pytest.mark.parametrize("row_id", MEL_IDS)
def test_log_mel_matches_reference_golden(row_id: str) -> None:
    require_shared()
    gold = np.load(GOLDEN / f"{row_id}.mel.npy")
    samples = decode_audio(audio_path(row_id))

    # the golden is the reference's first window: log-mel of the audio padded or cut to 30 s
    window = log_mel_spectrogram(pad_or_trim(samples, N_SAMPLES)).numpy()
    assert window.shape == gold.shape == (80, N_FRAMES)
    assert np.abs(window - gold).max() <= 1e-4

    # transcription's way (whole file plus 30 s of zeros) agrees with it wherever both see the same samples:
    # all frames for audio under 30 s, all but the last one (which reaches past 30 s) for longer audio
    whole = log_mel_spectrogram(samples, 80, padding=N_SAMPLES)
    assert whole.shape[1] == (samples.size + N_SAMPLES) // HOP_LENGTH
    first = pad_or_trim(whole[:, :N_FRAMES], N_FRAMES).numpy()
    if float(whole.max()) == float(window.max()):  # same floor (max - 8) in both
        frames = N_FRAMES if samples.size <= N_SAMPLES - N_FFT // 2 else N_FRAMES - 1
        assert np.abs(first[:, :frames] - gold[:, :frames]).max() <= 1e-4


def test_shared_files_decode_to_their_stated_duration() -> None:
    require_shared()
    for row in manifest_rows():
        samples = decode_audio(DATA / row["path"])
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert abs(samples.size / SAMPLE_RATE - float(row["duration_s"])) < 0.06, row["id"]
        assert 0.0 < np.abs(samples).max() <= 1.0, row["id"]


def test_stereo_file_is_the_average_of_its_channels() -> None:
    # the manifest says libri_wizard is the left channel of this file and libri_horizon the right one
    require_shared()
    stereo = decode_audio(DATA / "misc" / "stereo_two_speakers.wav")
    left, right = decode_audio(audio_path("libri_wizard")), decode_audio(audio_path("libri_horizon"))
    assert stereo.shape == left.shape == right.shape == (5 * SAMPLE_RATE,)
    assert np.abs(stereo - (left + right) / 2).max() <= 1.0 / 32768  # one 16-bit step of rounding
    assert np.corrcoef(stereo, left)[0, 1] > 0.3 and np.corrcoef(stereo, right)[0, 1] > 0.3


def test_path_bytes_file_object_and_array_give_the_same_samples() -> None:
    require_shared()
    path = audio_path("comfyui_hotword")  # an mp3 at 44.1 kHz stereo: resampled and downmixed
    from_path = decode_audio(path)
    assert np.array_equal(decode_audio(str(path)), from_path)
    assert np.array_equal(decode_audio(path.read_bytes()), from_path)
    with path.open("rb") as f:
        assert np.array_equal(decode_audio(f), from_path)
    assert np.array_equal(decode_audio(from_path), from_path)
    assert np.array_equal(load_audio(path), from_path)
    # the mel accepts the same inputs
    assert torch.equal(log_mel_spectrogram(path), log_mel_spectrogram(from_path))


# --------------------------------------------------------------------------------------------- formats


FORMATS = [
    # (file name, audio codec, sample rate, layout, video codec)
    ("tone.wav", "pcm_s16le", 44100, "stereo", None),
    ("tone.flac", "flac", 22050, "mono", None),
    ("tone.mp3", "libmp3lame", 44100, "stereo", None),
    ("tone.opus", "libopus", 48000, "mono", None),
    ("tone.m4a", "aac", 44100, "stereo", None),
    ("tone.mkv", "libmp3lame", 32000, "mono", None),
    ("clip.mp4", "aac", 48000, "stereo", "mpeg4"),
    ("clip.webm", "libopus", 48000, "stereo", "libvpx"),
]


@pytest.mark.parametrize("name, codec, rate, layout, video", FORMATS, ids=[f[0] for f in FORMATS])
def test_decodes_each_format_to_16k_mono(tmp_path: Path, name: str, codec: str, rate: int, layout: str, video: str | None) -> None:
    seconds, freq = 1.0, 1000.0
    path = encode(tmp_path / name, codec, rate, layout, tone(freq, seconds, rate), video)
    samples = decode_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / SAMPLE_RATE - seconds) < 0.05  # codec priming is trimmed, as ffmpeg does
    middle = samples[samples.size // 4 : 3 * samples.size // 4]  # away from codec fade-in and tail
    assert abs(dominant_frequency(middle) - freq) < 5.0
    # same level after downmix (stereo channels averaged, not summed) and resampling
    assert abs(np.sqrt(np.mean(middle**2)) - 0.5 / math.sqrt(2)) < 0.03
    # and it is the tone itself: aligned, it correlates almost perfectly with a clean 16 kHz tone
    clean = tone(freq, seconds, SAMPLE_RATE)
    lag = int(np.argmax(np.correlate(clean[:3200], middle[:1600], mode="valid")))
    assert np.corrcoef(middle[:1600], clean[lag : lag + 1600])[0, 1] > 0.98


def test_other_sampling_rate_and_stereo_arrays(tmp_path: Path) -> None:
    path = encode(tmp_path / "tone.wav", "pcm_s16le", 44100, "mono", tone(440.0, 1.0, 44100))
    at_8k = decode_audio(path, sampling_rate=8000)
    assert at_8k.size == 8000 and abs(dominant_frequency(at_8k, 8000) - 440.0) < 5.0

    left, right = tone(440.0, 0.5, SAMPLE_RATE), tone(880.0, 0.5, SAMPLE_RATE)
    mixed = (left + right) / 2
    assert np.allclose(decode_audio(np.stack([left, right])), mixed, atol=1e-7)  # (channels, samples)
    assert np.allclose(decode_audio(np.stack([left, right], axis=1)), mixed, atol=1e-7)  # (samples, channels)
    pcm = (left * 32767).astype(np.int16)
    assert np.allclose(decode_audio(pcm), pcm / 32768.0, atol=1e-7)
    assert decode_audio(pcm).dtype == np.float32


def test_file_with_no_samples_decodes_to_empty_array(tmp_path: Path) -> None:
    import wave

    path = tmp_path / "nothing.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(SAMPLE_RATE)
    assert path.stat().st_size == 44  # a header, no data
    samples = decode_audio(path)
    assert samples.shape == (0,) and samples.dtype == np.float32


# --------------------------------------------------------------------------------------------- errors


def test_missing_file_is_named() -> None:
    with pytest.raises(AudioDecodeError, match=r"^no such file: .*does_not_exist\.wav$"):
        decode_audio("/nonexistent/does_not_exist.wav")


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.touch()
    with pytest.raises(AudioDecodeError, match=r"empty\.mp3 is empty \(0 bytes\)"):
        decode_audio(empty)
    with pytest.raises(AudioDecodeError, match=r"empty \(0 bytes\)"):
        decode_audio(b"")
    with pytest.raises(AudioDecodeError, match=r"empty \(0 bytes\)"):
        decode_audio(io.BytesIO())


@pytest.mark.parametrize("name", ["notes.txt", "notes.wav"])
def test_text_file_is_not_audio(tmp_path: Path, name: str) -> None:
    text = tmp_path / name
    text.write_text("These are meeting notes, not a recording.\n" * 20, encoding="utf-8")
    with pytest.raises(AudioDecodeError, match=rf"{name} could not be decoded as audio: \S"):
        decode_audio(text)
    with pytest.raises(AudioDecodeError, match=r"the audio bytes could not be decoded as audio: Invalid data"):
        decode_audio(b"\x00\x01garbage" * 100)


def test_video_without_audio_says_so(tmp_path: Path) -> None:
    import av

    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode(None))
    with pytest.raises(AudioDecodeError, match=r"silent_film\.mp4 has no audio stream"):
        decode_audio(path)


def test_directory_and_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="is a directory"):
        decode_audio(tmp_path)
    with pytest.raises(AudioDecodeError, match="cannot read audio from a int"):
        decode_audio(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- pad_or_trim


def test_pad_or_trim_numpy_and_torch() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(pad_or_trim(x, 2), x[:, :2])
    assert np.array_equal(pad_or_trim(x, 6), np.concatenate([x, np.zeros((3, 2), np.float32)], axis=1))
    assert np.array_equal(pad_or_trim(x, 5, axis=0), np.concatenate([x, np.zeros((2, 4), np.float32)], axis=0))
    assert pad_or_trim(x, 4) is x
    t = torch.from_numpy(x)
    assert torch.equal(pad_or_trim(t, 2), t[:, :2])
    assert torch.equal(pad_or_trim(t, 6), torch.from_numpy(pad_or_trim(x, 6)))
    assert torch.equal(pad_or_trim(t, 1, axis=0), t[:1])
    assert torch.equal(pad_or_trim(t, 5, axis=0), torch.from_numpy(pad_or_trim(x, 5, axis=0)))
    assert pad_or_trim(np.zeros(7, np.float32)).shape == (N_SAMPLES,)


# --------------------------------------------------------------------------------------------- mel filters


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    """Slaney's scale from its definition: 200/3 Hz per mel up to 1 kHz (mel 15), then x6.4 every 27 mels."""
    return np.where(mel < 15, mel * 200 / 3, 1000 * 6.4 ** ((mel - 15) / 27))


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filterbank_is_slaney_triangles(n_mels: int) -> None:
    bank = mel_filters(n_mels).numpy().astype(np.float64)
    assert bank.shape == (n_mels, N_FFT // 2 + 1) and mel_filters(n_mels).dtype == torch.float32
    assert (bank >= 0).all()
    top_mel = 15 + 27 * math.log(8000 / 1000) / math.log(6.4)
    edges = _slaney_hz(np.linspace(0, top_mel, n_mels + 2))
    bins = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT  # 40 Hz apart
    for i, row in enumerate(bank):
        lower, centre, upper = edges[i], edges[i + 1], edges[i + 2]
        height = 2 / (upper - lower)  # Slaney normalisation: unit area in Hz
        inside = (bins > lower) & (bins < upper)
        assert (row[~inside] == 0).all(), i
        expected = height * np.minimum((bins - lower) / (centre - lower), (upper - bins) / (upper - centre))
        assert np.allclose(row[inside], expected[inside], rtol=1e-5, atol=1e-9), i
        if row.any():
            assert abs(bins[np.argmax(row)] - centre) <= SAMPLE_RATE / N_FFT / 2 + 1e-6, i  # peak at the nearest bin
        if upper - lower > 400:  # wide enough that the sampled triangle's area is the continuous one
            assert abs(row.sum() * SAMPLE_RATE / N_FFT - 1.0) < 0.02, i


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filterbank_matches_reference_npz(n_mels: int) -> None:
    with np.load(_reference_filters()) as f:
        reference = f[f"mel_{n_mels}"]
    assert np.abs(mel_filters(n_mels).numpy() - reference).max() < 1e-7


def test_mel_filters_rejects_other_sizes_and_caches() -> None:
    assert mel_filters(80) is mel_filters(80)
    with pytest.raises(ValueError, match="80 or 128"):
        mel_filters(64)


# --------------------------------------------------------------------------------------------- log-mel


@pytest.mark.parametrize("padding", [0, 37, 1000])
def test_blocked_log_mel_equals_whole_signal(padding: int) -> None:
    generator = torch.Generator().manual_seed(0)
    seconds = torch.arange(7 * SAMPLE_RATE + 123) / SAMPLE_RATE
    audio = 0.3 * torch.sin(2 * math.pi * 300 * seconds) * torch.sin(2 * math.pi * 0.5 * seconds)
    audio = audio + 0.01 * torch.randn(audio.shape, generator=generator)
    whole = reference_log_mel(audio, padding=padding)
    for block_frames in (1, 97, 250, 10_000):
        blocked = log_mel_spectrogram(audio, padding=padding, block_frames=block_frames)
        assert blocked.shape == whole.shape == (80, (audio.numel() + padding) // HOP_LENGTH)
        assert (blocked - whole).abs().max() <= 1e-5
    assert (log_mel_spectrogram(audio.numpy(), 128, padding=padding, block_frames=300) - reference_log_mel(audio, 128, padding)).abs().max() <= 1e-5


def test_log_mel_edge_lengths() -> None:
    assert log_mel_spectrogram(np.zeros(0, np.float32)).shape == (80, 0)
    assert log_mel_spectrogram(np.zeros(0, np.float32), padding=N_SAMPLES).shape == (80, N_FRAMES)
    short = torch.linspace(-0.5, 0.5, 300)  # longer than the reflect pad, shorter than a block
    assert (log_mel_spectrogram(short, padding=90) - reference_log_mel(short, padding=90)).abs().max() <= 1e-5
    with pytest.raises(ValueError):
        log_mel_spectrogram(torch.zeros(2, 1000))


def test_a_file_decodes_while_another_thread_is_still_importing_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI decodes the first file in a thread while the main thread may be importing torch: a half-initialised
    torch module (no ``is_tensor`` yet) in sys.modules must not break decoding a path."""
    import sys
    import types

    require_shared()
    expected = decode_audio(str(audio_path("jfk")))
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    np.testing.assert_array_equal(decode_audio(str(audio_path("jfk"))), expected)
