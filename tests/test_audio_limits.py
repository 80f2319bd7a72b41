"""Bounded decoding: the declared-duration check, the limit enforced while decoding, and the chunked stream decoder."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import audio_path

from tingxie.audio import AudioTooLongError, decode_audio, format_duration, iter_audio
from tingxie.errors import AudioDecodeError


def one_hz_wav(path: Path, samples: int = 100_000) -> Path:
    """A small WAV whose header says 1 Hz: 200 KB that decode to 27.8 h at 16 kHz (the issue's duration bomb)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(1)
        w.writeframes(np.zeros(samples, "<i2").tobytes())
    return path


def lying_flac(path: Path, seconds: int = 60, declared_samples: int = 16000, rate: int = 16000) -> Path:
    """A FLAC of ``seconds`` of noise whose STREAMINFO declares only ``declared_samples`` samples (1 s)."""
    pcm = (np.random.default_rng(0).standard_normal((1, rate * seconds)) * 1000).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    data = bytearray(buf.getvalue())
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big")  # rate (20 bits), channels (3), bits (5), total samples (36)
    assert fields & ((1 << 36) - 1) == rate * seconds
    data[18:26] = ((fields >> 36 << 36) | declared_samples).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def test_a_declared_duration_over_the_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = one_hz_wav(tmp_path / "bomb.wav")
    with pytest.raises(AudioTooLongError) as caught:
        decode_audio(bomb, max_seconds=3 * 3600)
    assert "27.7778 h long (as its header declares), over the limit of 3 h" in str(caught.value)
    assert caught.value.limit_seconds == 3 * 3600
    assert isinstance(caught.value, AudioDecodeError)  # callers that catch decode errors catch this one too


def test_a_header_that_lies_is_caught_at_the_limit_while_decoding(tmp_path: Path) -> None:
    liar = lying_flac(tmp_path / "liar.flac")
    assert decode_audio(liar).size == 60 * 16000  # the header says 1 s; the frames hold 60
    with pytest.raises(AudioTooLongError, match=r"longer than the limit of 10 s \(decoding stopped there\)"):
        decode_audio(liar, max_seconds=10)
    with pytest.raises(AudioTooLongError):
        list(iter_audio(liar, max_seconds=10))


def test_audio_within_the_limit_decodes_as_without_one() -> None:
    path = audio_path("jfk")  # 11 s
    assert np.array_equal(decode_audio(path, max_seconds=12), decode_audio(path))
    with pytest.raises(AudioTooLongError, match="over the limit of 5 s"):
        decode_audio(path, max_seconds=5)
    with pytest.raises(AudioTooLongError, match="over the limit of 5 s"):
        decode_audio(np.zeros(16000 * 6, np.float32), max_seconds=5)


@pytest.mark.parametrize("chunk_seconds", [30.0, 3.3, 0.01])
def test_the_stream_decoder_gives_the_same_samples_in_chunks(chunk_seconds: float) -> None:
    path = audio_path("comfyui_hotword")  # mp3 at 44.1 kHz stereo: resampled and downmixed on the way
    chunks = list(iter_audio(path, chunk_seconds=chunk_seconds))
    size = int(round(chunk_seconds * 16000))
    assert all(chunk.size == size for chunk in chunks[:-1]) and 0 < chunks[-1].size <= size
    assert all(chunk.dtype == np.float32 for chunk in chunks)
    assert np.array_equal(np.concatenate(chunks), decode_audio(path))


def test_the_stream_decoder_holds_one_chunk_not_the_file(tmp_path: Path) -> None:
    """Ten minutes of WAV streamed in 30-s chunks: every chunk is a new small array, never a view of the whole."""
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.arange(16000 * 600) % 2000 - 1000).astype("<i2").tobytes())
    count = 0
    for chunk in iter_audio(path):
        assert chunk.base is None or chunk.base.size <= 16000 * 31  # owns at most a chunk and one frame's spill
        count += 1
    assert count == 20


def test_the_stream_decoder_reports_bad_input_as_decode_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n" * 100)
    with pytest.raises(AudioDecodeError, match="it is a text file"):
        next(iter_audio(text))
    with pytest.raises(AudioDecodeError, match="no such file"):
        next(iter_audio(tmp_path / "missing.wav"))


def test_durations_read_as_people_say_them() -> None:
    assert [format_duration(s) for s in (30, 600, 10800, 5400)] == ["30 s", "10 min", "3 h", "1.5 h"]


@pytest.mark.parametrize("name", ["comfyui_hotword", "jfk"])  # mp3 (planar float, 44.1 kHz stereo) and flac
def test_long_frames_are_resampled_in_pieces_with_the_same_samples(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A frame longer than MAX_FRAME_SECONDS (hours, at 1 Hz) is cut before resampling; the output does not change."""
    from tingxie import audio

    whole = decode_audio(audio_path(name))
    monkeypatch.setattr(audio, "MAX_FRAME_SECONDS", 0.01)  # every frame of these files is cut in several
    assert np.array_equal(decode_audio(audio_path(name)), whole)


def test_a_one_hz_bomb_overshoots_the_limit_by_at_most_one_piece(tmp_path: Path) -> None:
    """A 1-Hz FLAC's frames last hours; they are resampled 30 s at a time, so decoding stops within a minute of the limit."""
    from tingxie import audio

    liar = lying_flac(tmp_path / "liar.flac", seconds=20_000, declared_samples=1, rate=1)  # says 1 s, holds 5.6 h
    pieces = []
    with pytest.raises(AudioTooLongError, match="longer than the limit of 2 min"):
        with audio._audio_stream(str(liar), "liar") as (container, stream):
            for piece in audio._s16_chunks(container, stream, "liar", 16000, 120):
                pieces.append(piece.size)
    assert max(pieces) <= 2 * 30 * 16000 and sum(pieces) <= 120 * 16000  # the resampler may hold back part of a piece
