"""vad_filter: only the speech the Silero VAD finds is transcribed (joined end to end), at its times in the whole
audio; and clips (clip_timestamps) stay inside the audio."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest
from conftest import audio_path, manifest_rows

from tingxie.errors import OptionError
from tingxie.options import build_options

SR = 16000


def _reference(row_id: str) -> str:
    from tingxie.normalizers.english import english_normalize

    return english_normalize(next(r["reference"] for r in manifest_rows() if r["id"] == row_id))


def _noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(int(seconds * SR)) * 0.003).astype(np.float32)  # a quiet hiss, about -50 dBFS


def test_vad_filter_options_are_checked_and_exclusive_with_clips():
    with pytest.raises(OptionError, match="clip_timestamps"):
        build_options(vad_filter=True, clip_timestamps="10,20")
    with pytest.raises(OptionError, match="vad_threshold"):
        build_options(vad_filter=True, vad_threshold=1.5)
    with pytest.raises(OptionError, match="vad_min_silence_ms"):
        build_options(vad_min_silence_ms=-1)
    vad = build_options(vad_filter=True, clip_timestamps="0", vad_speech_pad_ms=100).vad_options()
    assert (vad.threshold, vad.min_silence_ms, vad.speech_pad_ms) == (0.5, 2000, 100)



def test_speech_map_joins_the_regions_and_maps_times_back():
    from tingxie.vad import SpeechMap

    audio = np.arange(20 * SR, dtype=np.float32)
    speech = SpeechMap(((1 * SR, 4 * SR), (10 * SR, 12 * SR), (15 * SR, 20 * SR)), pad=SR // 4)
    joined = speech.join(audio)
    assert joined.size == 10 * SR and joined[3 * SR] == 10 * SR and joined[5 * SR] == 15 * SR
    assert speech.original_time(0.0) == 1.0 and speech.original_time(2.5) == 3.5
    assert speech.original_time(3.0) == 10.0 and speech.original_time(3.0, end=True) == 4.0  # a seam
    assert speech.original_time(4.5) == 11.5 and speech.original_time(99.0) == 20.0
    assert speech.original_span(0.5, 2.0) == (1.5, 3.0)
    assert speech.original_span(1.0, 4.5) == (2.0, 11.5)  # a segment across a seam covers the pause
    assert speech.original_span(2.5, 4.5) == (10.0, 11.5)  # 0.5 s of the first region: a graze, not a start
    assert speech.original_span(3.2, 5.5) == (10.2, 12.0)  # 0.5 s into the third: a graze, not an end
    assert speech.original_span(3.2, 3.4) == (10.2, 10.4)
    assert SpeechMap(()).join(audio).size == 0 and SpeechMap(()).original_span(1.0, 2.0) == (1.0, 2.0)

def test_cli_offers_vad_filter_with_its_defaults():
    from tingxie.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["transcribe"].format_help()
    assert "--vad_filter" in text and "(default: False)" in text.split("--vad_filter", 1)[1]
    assert "--vad_min_silence_ms" in text and "(default: 2000)" in text.split("--vad_min_silence_ms", 1)[1]


def test_vad_filter_transcribes_only_the_speech_at_its_true_times(tiny_en):
    from tingxie.audio import decode_audio
    from tingxie.normalizers.english import english_normalize

    rng = np.random.default_rng(0)
    layout = [(None, 3), ("jfk", None), (None, 45), ("libri_wizard", None), (None, 38), ("libri_horizon", None), (None, 20)]
    pieces, spans, at = [], {}, 0.0
    for row_id, seconds in layout:  # three utterances between long stretches of hiss, like a sparse meeting
        piece = decode_audio(audio_path(row_id)) if row_id else _noise(seconds, rng)
        if row_id:
            spans[row_id] = (at, at + piece.size / SR)
        pieces.append(piece)
        at += piece.size / SR
    audio = np.concatenate(pieces)
    progress = []
    result = tiny_en.transcribe(audio, vad_filter=True, temperature=0.0, on_progress=lambda done, total: progress.append((done, total)))

    assert result.segments
    for seg in result.segments:  # nothing from the hiss: every segment lies on one utterance
        assert any(start - 0.6 <= seg.start and seg.end <= end + 0.6 for start, end in spans.values()), (seg.start, seg.end, seg.text)
    for row_id, (start, end) in spans.items():
        said = " ".join(s.text for s in result.segments if start - 0.6 <= s.start < end)
        assert jiwer.wer(_reference(row_id), english_normalize(said)) <= 0.15, (row_id, said)
    assert result.segments[0].start == pytest.approx(spans["jfk"][0], abs=0.6)
    assert progress[-1][0] == progress[-1][1] < 0.4 * audio.size / 160  # decoded: the speech, under 40 % of the frames


def test_vad_filter_on_hiss_alone_decodes_nothing(tiny_en):
    hiss = _noise(40, np.random.default_rng(1))
    progress = []
    result = tiny_en.transcribe(hiss, vad_filter=True, on_progress=lambda done, total: progress.append(done))
    assert result.segments == [] and result.text == "" and progress == []


def test_clips_are_kept_inside_the_audio():
    from tingxie.transcribe import seek_clips

    assert seek_clips((), 500) == [(0, 500)]
    assert seek_clips((1.0,), 500) == [(100, 500)]
    assert seek_clips((0.0, 2.0, 3.0, 9.0), 500) == [(0, 200), (300, 500)]  # past the end: cut at the end
    assert seek_clips((0.0, 2.0, 7.0, 9.0), 500) == [(0, 200), (500, 500)]  # wholly past it: empty, skipped


def test_a_clip_ending_past_the_audio_finishes(tiny_en):
    # the last clip's end lies beyond jfk's 11 s: it used to leave a window of zero frames decoded again forever
    result = tiny_en.transcribe(str(audio_path("jfk")), clip_timestamps="0,5.5,6,30", temperature=0.0)
    assert result.segments and result.segments[-1].end <= 11.1
    assert all(s.end <= 5.6 or s.start >= 5.9 for s in result.segments)
    assert "country" in result.text



def _sparse_wav(path, rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """hiss, jfk, hiss, libri_wizard, hiss as a 16-bit WAV; returns each utterance's (start, end) seconds."""
    import wave

    from tingxie.audio import decode_audio

    pieces, spans, at = [], {}, 0.0
    for row_id, seconds in [(None, 2), ("jfk", None), (None, 30), ("libri_wizard", None), (None, 12)]:
        piece = decode_audio(audio_path(row_id)) if row_id else _noise(seconds, rng)
        if row_id:
            spans[row_id] = (at, at + piece.size / SR)
        pieces.append(piece)
        at += piece.size / SR
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(np.concatenate(pieces), -1, 1) * 32767).astype("<i2").tobytes())
    return spans


def test_the_server_filters_every_request_when_started_with_vad_filter(tiny_en, tmp_path):
    from test_server_support import openai_client, start_in_process

    from tingxie.cli import build_parser
    from tingxie.server.cli import settings_from_args

    assert settings_from_args(build_parser().parse_args(["serve", "--vad-filter"])).vad_filter
    assert not settings_from_args(build_parser().parse_args(["serve"])).vad_filter
    path = tmp_path / "sparse.wav"
    spans = _sparse_wav(path, np.random.default_rng(2))
    server = start_in_process(tiny_en, vad_filter=True)
    try:
        with path.open("rb") as f:
            reply = openai_client(server.url).audio.transcriptions.create(model="tiny.en", file=f, response_format="verbose_json")
    finally:
        server.stop()
    assert reply.segments
    for seg in reply.segments:  # at the utterances' times in the upload, nothing from the hiss
        assert any(start - 0.6 <= seg.start and seg.end <= end + 0.6 for start, end in spans.values()), (seg.start, seg.end, seg.text)
    assert "country" in reply.text and "wizard" in reply.text
