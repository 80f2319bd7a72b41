"""vad_filter: only the speech the Silero VAD finds is transcribed, at its times in the whole audio."""

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
