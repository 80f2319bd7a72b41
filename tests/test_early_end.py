"""A window whose decode ends early: the reference skips the rest of the window; tingxie resumes at the last timestamp
when at least ``early_end_threshold`` seconds of the window are left (``None``: the reference's rule)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import audio_path, require_shared

from tingxie import transcribe as loop
from tingxie import window_step
from tingxie.decoding.window import DecodingResult
from tingxie.errors import OptionError
from tingxie.options import TranscribeOptions, build_options
from tingxie.tokenizer import get_tokenizer

TOKENIZER = get_tokenizer(False)
TS = TOKENIZER.timestamp_begin  # <|0.00|>; one step is 0.02 s, i.e. 2 mel frames


def test_resume_at_the_lone_timestamp_when_enough_of_the_window_is_left():
    text = TOKENIZER.encode(" Hello there.")
    tokens = [TS, *text, TS + 300]  # ends on a lone <|6.00|>: mel frame 600 of the window
    assert window_step.resume_after_early_end(tokens, TS, 1000, 3000, 2, 4000, min_left=500) == 1600
    assert window_step.resume_after_early_end(tokens, TS, 1000, 3000, 2, 4000, min_left=2400) == 1600  # exactly 24 s left
    assert window_step.resume_after_early_end(tokens, TS, 1000, 3000, 2, 4000, min_left=2401) == 4000  # too little left
    assert window_step.resume_after_early_end([TS, *text], TS, 1000, 3000, 2, 4000, min_left=500) == 4000  # no final timestamp
    assert window_step.resume_after_early_end([TS, TS], TS, 1000, 3000, 2, 4000, min_left=500) == 4000  # <|0.00|>: no progress


def test_early_end_frames_combines_the_option_and_language_per_window():
    assert window_step.early_end_frames(TranscribeOptions(), language_per_window=False) == 500
    assert window_step.early_end_frames(TranscribeOptions(early_end_threshold=None), language_per_window=False) is None
    assert window_step.early_end_frames(TranscribeOptions(early_end_threshold=None), language_per_window=True) == 100
    assert window_step.early_end_frames(TranscribeOptions(early_end_threshold=12.5), language_per_window=True) == 100
    assert window_step.early_end_frames(TranscribeOptions(early_end_threshold=0.5), language_per_window=True) == 50


@pytest.mark.parametrize("bad", [0.0, -1.0, 30.5])
def test_early_end_threshold_is_checked(bad):
    with pytest.raises(OptionError, match="early_end_threshold"):
        build_options(early_end_threshold=bad)


class _Dims:
    n_audio_ctx, n_text_ctx = 1500, 448


class _Model:
    """Only what the long-form loop reads of an engine; decoding itself is scripted below."""

    dims = _Dims()
    is_multilingual = False
    num_languages = 0


@pytest.mark.parametrize("threshold, seeks", [(5.0, [0, 600, 3600]), (None, [0, 3000])])
def test_the_loop_starts_the_next_window_at_an_early_end(monkeypatch, threshold, seeks):
    """45 s of audio; the first window's decode ends on a lone <|6.00|>: the next window starts at 6 s (24 s of the
    window were left undecoded), or at 30 s with the reference's rule."""
    decoded_at = []

    def scripted(model, features, tokenizer, options, prompt=None, **kwargs):
        decoded_at.append(features)
        tokens = [TS, *TOKENIZER.encode(" Words."), TS + 300] if features == 0 else [TS, *TOKENIZER.encode(" More."), TS + 1500, TS + 1500]
        return DecodingResult(tokens=tokens, text="", language="en", avg_logprob=-0.1, no_speech_prob=0.0, temperature=0.0,
                              compression_ratio=1.0)

    monkeypatch.setattr(loop, "decode_with_fallback", scripted)
    monkeypatch.setattr(loop, "window_features", lambda model, mel: int(mel[0, 0]))  # the window's first frame index
    content_frames = 4500
    mel = np.tile(np.arange(content_frames, dtype=np.float32), (80, 1))
    options = build_options(language="en", early_end_threshold=threshold, temperature=0.0)
    segments = list(loop.iter_segments(_Model(), mel, content_frames, TOKENIZER, options))
    assert decoded_at == seeks
    assert [s.text.strip() for s in segments][:2] == ["Words.", "More."]


def test_speech_after_an_early_end_is_transcribed_on_real_audio():
    """real_concat, 1.2 s of silence, then the Declaration's opening (the int8 model, as the CLI runs it): the
    window over the join once ended right after real_concat's last words, and the reference's rule then skipped the
    next 24 s, the Declaration's first sentence with them."""
    from tingxie import load_model
    from tingxie.audio import load_audio

    require_shared()
    first, second = load_audio(str(audio_path("real_concat"))), load_audio(str(audio_path("declaration_tts")))
    audio = np.concatenate([first, np.zeros(int(1.2 * 16000), np.float32), second[: 40 * 16000]])
    model = load_model("tiny.en")  # the default: ONNX Runtime int8 on a CPU
    text = " ".join(model.transcribe(audio).text.lower().replace(",", " ").split())
    assert "course of human events" in text and "necessary for one people" in text, text
    assert "ask what you can do for your country" in text  # and the speech before the join is still there


class _SpreadingAligner:
    """An engine whose alignment heads attend token i to frame i * 1500 / T: DTW spreads the text over every frame
    it is given, as a window's alignment does when the decode stopped early in it."""

    def alignment_scores(self, tokens, features, heads, text_vocab):
        t = tokens.shape[-1]
        frames = np.arange(1500)[None, :]
        scores = -np.abs(frames - np.arange(t)[:, None] * 1500 / t).astype(np.float32)
        return np.zeros(t - 1, np.float32), scores[None]


@pytest.mark.parametrize("threshold, next_seek", [(5.0, 1000 + 900), (None, None)])
def test_words_of_a_window_that_ended_early_stay_within_its_decoded_part(threshold, next_seek):
    """A window (from 10 s) whose text ends on <|9.00|><|9.00|> with 21 s left: aligned over the whole window its words
    ran to ~39 s and the next window started there (the 9-30 s of speech lost, as on declaration_tts with int8); they
    are aligned again within the 9 s decoded and the next window starts at 19 s. early_end_threshold None keeps the
    reference's rule (the next window at the last word's end)."""
    text = TOKENIZER.encode(" We hold these truths to be self evident, that all men are created equal.")
    result = DecodingResult(tokens=[TS + 50, *text, TS + 450, TS + 450], text="", language="en", avg_logprob=-0.1, no_speech_prob=0.0,
                            temperature=0.0, compression_ratio=1.0)
    options = build_options(language="en", word_timestamps=True, early_end_threshold=threshold, temperature=0.0)
    outcome = window_step.finish_window(_SpreadingAligner(), result, TOKENIZER, options, seek=1000, segment_size=3000, content_frames=10000,
                                        alignment_heads=[(0, 0)], early_end_min_left=window_step.early_end_frames(options, False))
    words = [w for s in outcome.segments for w in s["words"]]
    if next_seek is None:
        assert words[-1]["end"] > 30 and outcome.next_seek == round(words[-1]["end"] * 100)
    else:
        assert outcome.next_seek == next_seek
        assert 10.4 <= words[0]["start"] and words[-1]["end"] <= 19.0


def test_subtitles_of_the_declaration_keep_every_passage_with_the_cli_defaults(tmp_path):
    """`tingxie transcribe declaration_tts.flac --word_timestamps True` as a user runs it (int8, beam 5, fallback): the
    int8 decode of the window at 94 s stops at 9 s; its words were once aligned to 117-124 s and the next window
    started there, dropping "We therefore represent ..." (103-124 s). Every sentence is now in the subtitles."""
    from tingxie.cli import main

    require_shared()
    assert main(["transcribe", str(audio_path("declaration_tts")), "--word_timestamps", "True", "--output_format", "srt",
                 "--output_dir", str(tmp_path), "--verbose", "False", "--progress", "False"]) == 0
    srt = (tmp_path / "declaration_tts.srt").read_text().lower()
    assert "therefore represent" in srt and "such has been the patient" in srt
