"""The attention-guided commit policy (AlignAtt) and the transcriber's degraded modes and close, on scripted
hypotheses (no model), as test_streaming.py tests local agreement."""

from __future__ import annotations

import numpy as np
import pytest
from test_streaming import SCRIPT, SR, ScriptedDecoder, run_scripted, text, words

from tingxie.errors import OptionError
from tingxie.streaming.agreement import LocalAgreement, word_key
from tingxie.streaming.alignatt import AttentionCommit, commit_policy
from tingxie.streaming.events import TimedWord
from tingxie.streaming.options import StreamOptions
from tingxie.streaming.transcriber import StreamingTranscriber


def test_alignatt_commits_from_one_decode_up_to_the_first_word_attending_to_the_buffer_end():
    policy = AttentionCommit()
    hypothesis = words("and so my fellow", step=0.5)  # ends 0.5, 1.0, 1.5, 2.0
    committed = policy.insert(hypothesis, horizon=1.6)
    assert text(committed) == "and so my" and text(policy.pending) == "fellow"  # no second decode needed
    # a word aligned to the last frames holds back everything after it, even a word timed earlier by a bad alignment
    odd = [*words("fellow", start=1.5, step=0.5), TimedWord(" Americans", 1.9, 3.0), TimedWord(" ask", 2.0, 2.4)]
    assert text(policy.insert(odd, horizon=2.8)) == "fellow"
    assert text(policy.pending) == "Americans ask"
    # the words already committed are recognised in the next hypothesis and not committed twice
    assert text(policy.insert(words("and so my fellow Americans ask not", step=0.5), horizon=3.3)) == "Americans ask"
    assert text(policy.history) == "and so my fellow Americans ask" and text(policy.pending) == "not"


def test_local_agreement_still_waits_for_two_decodes():
    policy = LocalAgreement()
    assert policy.insert(words("and so my fellow", step=0.5), horizon=1.6) == []
    assert text(policy.insert(words("and so my fellow Americans", step=0.5), horizon=2.1)) == "and so my fellow"


def test_policy_by_name_and_options():
    assert type(commit_policy("alignatt")) is AttentionCommit and type(commit_policy("local-agreement")) is LocalAgreement
    assert StreamOptions().policy == "alignatt"
    assert StreamOptions(alignatt_frames=10).commit_horizon_s == pytest.approx(0.2)
    assert StreamOptions(policy="local-agreement", commit_margin_s=0.3).commit_horizon_s == pytest.approx(0.3)
    with pytest.raises(OptionError, match="policy must be one of alignatt, local-agreement"):
        StreamOptions(policy="wait-k")
    with pytest.raises(OptionError, match="alignatt_frames"):
        StreamOptions(alignatt_frames=-1)


def test_alignatt_stream_commits_every_word_once_and_sooner_than_local_agreement():
    """The scripted speaker says a word every 0.4 s; the word being said is garbled (its end is the buffer's end)."""
    for policy in ("alignatt", "local-agreement"):
        _, _, events = run_scripted(SCRIPT, StreamOptions(vad=False, step_s=0.5, policy=policy, start_commit_s=0), seconds=6.0)
        committed = [w for e in events if e.type == "final" for w in e.words]
        assert " ".join(w.word.strip() for w in committed) == SCRIPT  # nothing lost, nothing doubled, nothing garbled
    streams = {}
    for policy in ("alignatt", "local-agreement"):
        decoder = ScriptedDecoder(SCRIPT)
        options = StreamOptions(vad=False, step_s=0.5, policy=policy, alignatt_frames=5, min_commit_s=0.5, start_commit_s=0)
        streams[policy] = StreamingTranscriber(options=options, decoder=decoder)
        decoder.transcriber = streams[policy]
    chunk = np.zeros(int(0.5 * SR), dtype=np.float32)
    # 0.5 s heard: "we" (0-0.4 s) ends before the last 5 frames, so alignatt makes it final from this one decode
    assert [e.text for e in streams["alignatt"].accept(chunk) if e.type == "final"] == ["we"]
    assert not any(e.type == "final" for e in streams["local-agreement"].accept(chunk))
    assert [e.text for e in streams["local-agreement"].accept(chunk) if e.type == "final"] == ["we"]  # one step later


def test_a_buffer_shorter_than_min_commit_s_commits_nothing_only_the_partial():
    """The defaults (but the stream start's longer wait): in the first 1.5 s of an utterance Whisper guesses from too little speech; its words are shown
    (partial) but not made final, then the same words commit once the buffer is long enough."""
    assert StreamOptions().min_commit_s == 1.5
    decoder = ScriptedDecoder(SCRIPT)
    stream = StreamingTranscriber(options=StreamOptions(vad=False, step_s=0.5, start_commit_s=0), decoder=decoder)
    decoder.transcriber = stream
    chunk = np.zeros(int(0.5 * SR), dtype=np.float32)
    early = stream.accept(chunk) + stream.accept(chunk)  # 1.0 s: two decodes, "we hold" heard and "these" begun
    assert len(decoder.calls) == 2 and [e.type for e in early] == ["partial", "partial"] and early[-1].text == "we hold th~"
    later = stream.accept(chunk)  # 1.5 s: the words that end before the attention margin commit
    assert [e.text for e in later if e.type == "final"] == ["we hold these"]  # "these" ends 0.3 s before the end
    with pytest.raises(OptionError, match="min_commit_s"):
        StreamOptions(min_commit_s=-1)


def test_degraded_modes_decode_greedily_and_less_often_then_recover():
    full, fast = ScriptedDecoder(SCRIPT), ScriptedDecoder(SCRIPT)
    stream = StreamingTranscriber(options=StreamOptions(vad=False, step_s=0.5), decoder=full, fast_decoder=fast)
    full.transcriber = fast.transcriber = stream
    chunk = np.zeros(1600, dtype=np.float32)
    events = []
    for _ in range(10):  # 1 s: two decodes at full quality
        events += stream.accept(chunk)
    assert (len(full.calls), len(fast.calls)) == (2, 0)
    stream.degrade(1)  # the same beams, a decode every 1 s
    for _ in range(20):
        events += stream.accept(chunk)
    assert (len(full.calls), len(fast.calls)) == (4, 0) and stream.level == 1
    stream.degrade(5)  # clamped to the last level: greedy, every 2 s
    for _ in range(40):
        events += stream.accept(chunk)
    assert (len(full.calls), len(fast.calls)) == (4, 2) and stream.level == 2
    stream.degrade(0)
    for _ in range(5):
        events += stream.accept(chunk)
    assert (len(full.calls), len(fast.calls)) == (5, 2) and stream.level == 0
    events += stream.finish()
    # whichever decoder heard them, every word became final once, in order
    assert " ".join(w.word.strip() for e in events if e.type == "final" for w in e.words) == SCRIPT


def test_a_closed_transcriber_decodes_nothing_more():
    decoder = ScriptedDecoder(SCRIPT)
    stream = StreamingTranscriber(options=StreamOptions(vad=False, step_s=0.5), decoder=decoder)
    decoder.transcriber = stream
    stream.accept(np.zeros(8000, dtype=np.float32))
    calls = len(decoder.calls)
    assert calls == 1
    stream.close()
    assert stream.accept(np.zeros(16000, dtype=np.float32)) == [] and stream.finish() == []
    assert len(decoder.calls) == calls


def test_serve_and_stream_help_give_the_live_options_and_their_defaults(capsys):
    from tingxie.cli import build_parser
    from tingxie.server.cli import settings_from_args

    for command, expected in (
        ("serve", ("--max-streams", "(default: 4)", "--stream-idle-timeout", "(default: 30)", "--max-stream-lag", "(default: 10)",
                   "--policy {alignatt,local-agreement}", "(default: alignatt)")),
        ("stream", ("--policy {alignatt,local-agreement}", "(default: alignatt)")),
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        for text_ in expected:
            assert text_ in help_text, (command, text_)
    args = build_parser().parse_args(["serve", "--max-streams", "2", "--stream-idle-timeout", "5", "--max-stream-lag", "20", "--policy", "local-agreement"])
    settings = settings_from_args(args)
    assert (settings.max_streams, settings.stream_idle_timeout, settings.max_stream_lag, settings.stream_policy) == (2, 5.0, 20.0, "local-agreement")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--policy", "wait-k"])
    assert "invalid choice: 'wait-k'" in capsys.readouterr().err
    with pytest.raises(OptionError, match="max_streams must be >= 1"):
        settings_from_args(build_parser().parse_args(["serve", "--max-streams", "0"]))


def test_an_endpoint_makes_the_words_before_a_short_silence_final_at_once_and_the_pause_decodes_nothing_more():
    """Speech 0.5-3 s (a scripted VAD): 0.2 s into the silence the buffer is decoded and every word is final (the words
    before a silence are whole: no attention margin); at the 0.5-s pause there is nothing left to decode."""
    from test_streaming import ScriptedVad

    spoken = [TimedWord(" one", 0.6, 1.2), TimedWord(" two", 1.2, 1.8), TimedWord(" three", 1.8, 2.4), TimedWord(" four", 2.4, 2.95)]
    for endpoint_s in (0.2, 0.0):
        calls: list[float] = []
        stream: StreamingTranscriber | None = None

        def decoder(audio, prompt, prefix):
            start, end = stream._buffer.start / SR, (stream._buffer.start + len(audio)) / SR
            calls.append(end)
            return [TimedWord(w.word, w.start - start, min(w.end, end) - start) for w in spoken if w.start < end]

        options = StreamOptions(pause_s=0.5, preroll_s=0.3, step_s=0.5, endpoint_s=endpoint_s, start_commit_s=0)
        stream = StreamingTranscriber(options=options, vad=ScriptedVad([(0.5, 3.0)]), decoder=decoder)
        finals = []
        for k in range(50):  # 5 s in 0.1-s chunks
            finals += [((k + 1) / 10, e.text) for e in stream.accept(np.zeros(1600, dtype=np.float32)) if e.type == "final"]
        assert " ".join(t for _, t in finals) == "one two three four"
        if endpoint_s:
            assert finals[-1][0] <= 3.3 and max(calls) <= 3.3  # final 0.2-0.3 s after the speech; no decode at the pause
        else:
            assert finals[-1][0] >= 3.5  # only at the pause


def test_a_hypothesis_that_loops_is_not_trusted():
    """Over noise base wrote "啊啊啊啊啊啊啊啊" or "回家,回家,回家,回家" from 2 s of a meeting; committed, and then forced as the
    prefix of every later decode, the loop went on to the end of the clip. Such a decode is not trusted (None)."""
    from tingxie.streaming.decode import _loops

    def said(text: str) -> list[TimedWord]:
        return [TimedWord(w, 0.0, 0.0) for w in text.split()]

    assert _loops(said("啊 啊 啊 啊 啊")) and _loops(said("好, 回 家, 回 家, 回 家,")) and _loops(said("and important and important and important"))
    assert not _loops(said("no no no no")) and not _loops(said("ask what you can do for your country"))
    assert not _loops(said("that that is is that that")) and not _loops(said("very very good very very"))


def test_a_buffer_encoded_over_its_own_frames_and_a_margin_reads_the_same_words(tiny_en_default):
    """encode_margin_s: the encoder reads the buffer's frames and that much padding after them, not the 30-s window."""
    from conftest import audio_path

    from tingxie.audio import decode_audio
    from tingxie.streaming.decode import BufferDecoder

    audio = decode_audio(audio_path("jfk"))[: 8 * SR]
    engine = tiny_en_default.engine
    assert engine.encodes_fewer_frames  # the shipped graphs have a named frames axis
    asked = []
    encode_frames = engine.encode_frames

    def spy(mel, frames):
        asked.append(frames)
        features = encode_frames(mel, frames)
        assert features.cross_k[0].shape[2] == frames  # only these frames were encoded
        return features

    engine.encode_frames = spy
    try:
        partial = BufferDecoder(tiny_en_default, StreamOptions(encode_margin_s=6.0))(audio)
    finally:
        del engine.encode_frames
    whole = BufferDecoder(tiny_en_default, StreamOptions(encode_margin_s=None))(audio)
    assert asked == [(8 * 100 + 600) // 2]  # 8 s of buffer and 6 s of margin: 100 mel frames a second, 2 per encoder frame
    assert [word_key(w.word) for w in partial] == [word_key(w.word) for w in whole]  # punctuation may differ ("so," / "so")
    assert text(partial).replace(",", "").startswith("And so my fellow Americans")
