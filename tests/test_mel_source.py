"""The log-mel read window by window (tingxie.mel_source): equal to the whole-signal log-mel, and the same transcript."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import audio_path

from tingxie import mel_source
from tingxie.api import WhisperModel
from tingxie.audio import N_SAMPLES, decode_audio
from tingxie.mel import NumpyMelFrontEnd, TorchMelFrontEnd, log_mel_spectrogram, log_mel_spectrogram_numpy
from tingxie.mel_source import AudioFile, StreamedMel, file_mel, samples_mel

FRONT_ENDS = {
    "numpy": (NumpyMelFrontEnd, lambda x, n_mels: log_mel_spectrogram_numpy(x, n_mels, padding=N_SAMPLES)),
    "torch": (TorchMelFrontEnd, lambda x, n_mels: log_mel_spectrogram(x, n_mels, padding=N_SAMPLES).numpy()),
}


def _chunked(samples: np.ndarray, size: int):
    return lambda: (samples[i : i + size] for i in range(0, samples.size, size))


@pytest.fixture
def streamed(monkeypatch):
    """Short test audio read window by window, as a long recording is (nothing of the first pass kept)."""
    monkeypatch.setattr(mel_source, "KEEP_FIRST_PASS_BYTES", 0)


@pytest.mark.parametrize("engine", FRONT_ENDS)
@pytest.mark.parametrize("length", [150, 80_000 - 200, 80_000 + 40, 16_000 * 61 + 123])
def test_windows_equal_the_whole_log_mel(engine: str, length: int, streamed) -> None:
    """Every window, across block and chunk boundaries, the start's mirror and the silence after the end, bit for bit."""
    front_end, whole = FRONT_ENDS[engine]
    samples = (np.random.default_rng(length).standard_normal(length) * 0.1).astype(np.float32)
    samples[length // 3] = 0.9  # a loud frame somewhere in the middle sets the floor of all the others
    expected = whole(samples, 80)
    for chunk in (997, 160 * 500 + 1, 16_000 * 30):  # chunks that split blocks anywhere, and the readers' own size
        mel = StreamedMel(front_end(80), _chunked(samples, chunk))
        assert (mel.n_samples, mel.n_frames, mel.content_frames) == (length, expected.shape[1], length // 160)
        assert mel.peak == float(np.abs(samples).max())
        for seek in (0, 1, 499, 500, 2999, 3001, 4321, 6500, expected.shape[1] - 10):
            for size in (3000, 1, 700):
                assert np.array_equal(mel.window(seek, size), expected[:, seek : seek + size]), (chunk, seek, size)


def test_windows_in_any_order_and_128_mels(streamed) -> None:
    """A window behind the blocks held reads the audio again; 128 mel bins (large-v3) work the same."""
    samples = (np.random.default_rng(1).standard_normal(16_000 * 40) * 0.1).astype(np.float32)
    expected = log_mel_spectrogram_numpy(samples, 128, padding=N_SAMPLES)
    reads = []

    def chunks():
        reads.append(1)
        return _chunked(samples, 16_000)()

    mel = StreamedMel(NumpyMelFrontEnd(128), chunks)
    for seek in (3000, 4500, 100, 6999, 0):
        assert np.array_equal(mel.window(seek, 3000), expected[:, seek : seek + 3000])
    assert len(reads) == 1 + 3  # the first pass, then a fresh reading at 0 and at 100 after the reading passed them
    assert mel.window(mel.n_frames, 3000).shape == (128, 0)


@pytest.mark.parametrize("engine", FRONT_ENDS)
def test_short_audio_is_read_and_its_log_mel_computed_once(engine: str) -> None:
    """Under KEEP_FIRST_PASS_BYTES the first pass's blocks are the log-mel: no second reading, the same windows."""
    front_end, whole = FRONT_ENDS[engine]
    samples = (np.random.default_rng(7).standard_normal(16_000 * 70) * 0.1).astype(np.float32)
    expected = whole(samples, 80)
    reads = []

    def chunks():
        reads.append(1)
        return _chunked(samples, 16_000 * 30)()

    mel = StreamedMel(front_end(80), chunks)
    for seek in (3000, 0, 6999, 100):
        assert np.array_equal(mel.window(seek, 3000), expected[:, seek : seek + 3000])
    assert len(reads) == 1


def test_file_read_twice_as_a_stream_equals_its_samples(tmp_path, streamed) -> None:
    """A path, its bytes and a file object (rewound for the second reading) give the samples decode_audio gives."""
    path = audio_path("jfk")
    samples = decode_audio(path)
    expected = log_mel_spectrogram_numpy(samples, 80, padding=N_SAMPLES)
    data = path.read_bytes()
    for source in (path, data, io.BytesIO(data)):
        audio = AudioFile(source)
        assert audio.rereadable
        mel = file_mel(NumpyMelFrontEnd(80), audio)
        assert mel.n_samples == samples.size
        assert np.array_equal(mel.window(0, expected.shape[1]), expected)
        assert np.array_equal(mel.window(100, 50), expected[:, 100:150])
    assert np.array_equal(samples_mel(NumpyMelFrontEnd(80), samples).window(0, 3000), expected[:, :3000])


class _Pipe(io.RawIOBase):
    """A file object that reads once: it cannot seek."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class _WholeMel:
    """The model's engine computing the log-mel of the whole signal at once (the path before windows were read)."""

    mel_front_end = None

    def __init__(self, engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


def test_a_streamed_file_gives_the_transcript_of_the_whole_log_mel(tiny_en) -> None:
    """Real speech over several windows read twice as a stream gives the segments, times and words of the whole log-mel
    at once (float32: the reference's arithmetic); so do samples in memory and a pipe read once (decoded whole)."""
    whole_model = WhisperModel(_WholeMel(tiny_en.engine), name="tiny.en", alignment_heads=tiny_en.alignment_heads)
    options = {"temperature": 0.0, "word_timestamps": True}
    path = audio_path("real_concat")
    whole = whole_model.transcribe(str(path), clip_timestamps="0,50", **options)
    assert len({s.seek for s in whole.segments}) >= 2  # several windows, so the seek crossed blocks and chunks
    assert tiny_en.transcribe(str(path), clip_timestamps="0,50", **options).to_dict() == whole.to_dict()
    jfk = audio_path("jfk")
    expected = whole_model.transcribe(str(jfk), **options).to_dict()
    for audio in (decode_audio(jfk), _Pipe(jfk.read_bytes())):
        assert tiny_en.transcribe(audio, **options).to_dict() == expected


def test_digital_silence_and_short_files_are_found_on_the_stream(tiny_en, tmp_path) -> None:
    import wave

    silent, short = tmp_path / "silent.wav", tmp_path / "short.wav"
    for path, seconds in ((silent, 45), (short, 0.1)):
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(np.zeros(int(16000 * seconds), "<i2").tobytes())
    result = tiny_en.transcribe(str(silent))
    assert result.text == "" and result.duration == 45.0
    with pytest.raises(Exception, match=r"short.wav is only 0.10 s long"):
        tiny_en.transcribe(str(short))


def test_diarization_decodes_a_file_object_once(tiny_en_default) -> None:
    """The speaker turns need all the samples: a file object is decoded once, for both steps (read twice it was empty)."""
    with open(audio_path("jfk"), "rb") as f:
        result = tiny_en_default.transcribe(f, diarize=True)
    assert "ask not what your country can do for you" in result.text.lower()
    assert {s.speaker for s in result.segments} == {"SPEAKER_00"}
