"""The streaming transcriber's logic on scripted hypotheses (no model): local agreement, trimming, VAD gating;
the packaged Silero VAD on real speech; and `tingxie stream` on a shared file played in real time."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import audio_path

from tingxie.streaming.agreement import LocalAgreement, common_prefix, word_key
from tingxie.streaming.events import StreamEvent, TimedWord, final
from tingxie.streaming.gate import SpeechGate
from tingxie.streaming.options import StreamOptions
from tingxie.streaming.transcriber import StreamingTranscriber
from tingxie.vad import VadOptions, regions_from_probabilities

SR = 16000


def words(text: str, start: float = 0.0, step: float = 0.4, *, segment_ends: tuple[int, ...] = ()) -> list[TimedWord]:
    """Timed words for a text: each ``step`` long, one after the other from ``start``."""
    out = []
    for i, w in enumerate(text.split()):
        out.append(TimedWord(" " + w, round(start + i * step, 3), round(start + (i + 1) * step, 3), 0.9, i in segment_ends))
    return out


def text(ws) -> str:
    return "".join(w.word for w in ws).strip()


# ------------------------------------------------------------------------------------------ local agreement



class ScriptedVad:
    """A VAD whose speech probability is 0.9 inside the given (start, end) seconds and 0.05 elsewhere, per 512 samples."""

    def __init__(self, speech: list[tuple[float, float]]):
        self.speech = speech

    def stream(self):
        vad = self

        class Stream:
            samples_done = 0
            unscored = 0

            def accept(self, chunk):
                self.unscored += len(chunk)
                n, self.unscored = divmod(self.unscored, 512)
                times = [(self.samples_done + k * 512) / SR for k in range(n)]
                self.samples_done += n * 512
                return np.array([0.9 if any(a <= t < b for a, b in vad.speech) else 0.05 for t in times], dtype=np.float32)

        return Stream()

def test_a_prefix_is_final_once_two_consecutive_hypotheses_agree():
    la = LocalAgreement()
    assert la.insert(words("and so my")) == []  # nothing to agree with yet
    assert text(la.pending) == "and so my"
    committed = la.insert(words("and so am I fellow"))
    assert text(committed) == "and so"  # the shared prefix, not "my"/"am"
    assert text(la.pending) == "am I fellow"
    committed = la.insert(words("and so my fellow Americans"))  # re-decodes the committed words: they are skipped
    assert committed == []  # "my" disagrees with the pending "am"
    assert text(la.pending) == "my fellow Americans"
    assert text(la.insert(words("and so my fellow Americans ask"))) == "my fellow Americans"
    assert text(la.pending) == "ask"
    assert text(la.flush()) == "ask"
    assert la.pending == [] and la.committed_count == 6
    assert text(la.history) == "and so my fellow Americans ask"


def test_agreement_ignores_case_and_punctuation_but_commits_the_newest_spelling():
    la = LocalAgreement()
    la.insert(words("ask not what your"))
    committed = la.insert(words("Ask not, what your country"))
    assert [w.word for w in committed] == [" Ask", " not,", " what", " your"]
    assert word_key(" Country!") == word_key("country") == "country"
    assert common_prefix(words("a b c"), words("A B. x")) == 2


def test_committed_words_are_recognised_when_their_times_drift_and_repeat():
    la = LocalAgreement()
    la.insert(words("the cat saw the"))
    la.insert(words("the cat saw the dog"))
    assert text(la.history) == "the cat saw the"
    # the same words re-timed 0.3 s later, then new words: the second "the" is the committed one, not the first
    hypothesis = words("the cat saw the dog ran", start=0.3)
    assert text(la.new_words(hypothesis)) == "dog ran"


def test_without_a_text_match_words_after_the_committed_end_are_new():
    la = LocalAgreement()
    la.insert(words("one two three"))
    la.insert(words("one two three four"))  # commits one two three, ending at 1.2 s
    # the buffer was trimmed: the hypothesis starts after the committed words, with different words
    assert text(la.new_words(words("five six", start=1.25))) == "five six"
    # a word centred before the committed end is the tail of a committed one, mis-heard
    assert text(la.new_words([TimedWord(" tree", 0.9, 1.3), *words("five", start=1.3)])) == "five"


def test_times_of_committed_words_never_run_backwards():
    la = LocalAgreement()
    la.insert(words("a b"))
    la.insert(words("a b"))
    la.insert(words("c d", start=0.5))  # timed inside the committed "b"
    committed = la.insert(words("c d e", start=0.5))
    assert committed[0].start >= 0.8 and all(w.end >= w.start for w in committed)


def test_prompt_is_committed_text_before_the_buffer_in_whole_words():
    la = LocalAgreement()
    la.insert(words("alpha beta gamma delta"))
    la.flush()
    assert la.prompt(before=0.8) == "alpha beta"  # gamma and delta are still inside the buffer
    assert la.prompt(before=10.0, max_chars=12) == "gamma delta"
    assert la.prompt(before=10.0, max_chars=0) == ""


def test_final_event_json_shape():
    event = final(words("hello world", start=1.0))
    assert event.to_dict() == {
        "type": "final", "text": "hello world", "start": 1.0, "end": 1.8,
        "words": [{"word": " hello", "start": 1.0, "end": 1.4, "probability": 0.9},
                  {"word": " world", "start": 1.4, "end": 1.8, "probability": 0.9}],
    }
    assert StreamEvent("partial", "hel").to_dict() == {"type": "partial", "text": "hel"}


# ------------------------------------------------------------------------------------------ the transcriber, scripted


class ScriptedDecoder:
    """Plays a 'speaker' who says one word every 0.4 s: a decode of the buffer hears the words whose audio it holds,
    the last one garbled while it is still being said. Segments end after every 4th word."""

    def __init__(self, script: str) -> None:
        self.script = script.split()
        self.calls: list[tuple[float, float, str]] = []  # (buffer start s, buffer length s, prompt)
        self.transcriber: StreamingTranscriber | None = None  # whose buffer is decoded: set once it exists

    def __call__(self, audio: np.ndarray, prompt: str, prefix: str = "") -> list[TimedWord]:
        start = self.transcriber._buffer.start / SR
        length = len(audio) / SR
        self.calls.append((start, length, prompt))
        out = []
        for i, w in enumerate(self.script):
            w_start, w_end = i * 0.4, (i + 1) * 0.4
            if w_end <= start + 1e-6 or w_start >= start + length:
                continue
            spelled = w if w_end <= start + length + 1e-6 else w[:2] + "~"  # still being said
            out.append(TimedWord(" " + spelled, max(0.0, w_start - start), min(length, w_end - start), 0.9, i % 4 == 3))
        return out


def run_scripted(script: str, options: StreamOptions, seconds: float, chunk_s: float = 0.1):
    decoder = ScriptedDecoder(script)
    stream = StreamingTranscriber(options=options, decoder=decoder)
    decoder.transcriber = stream
    events = []
    chunk = np.zeros(int(chunk_s * SR), dtype=np.float32)
    for _ in range(int(seconds / chunk_s)):
        events += stream.accept(chunk)
    events += stream.finish()
    return stream, decoder, events


SCRIPT = "we hold these truths to be self evident that all men are created equal"


def test_transcriber_commits_every_word_once_in_order_with_stream_times():
    options = StreamOptions(vad=False, step_s=0.5)
    stream, decoder, events = run_scripted(SCRIPT, options, seconds=6.0)
    finals = [e for e in events if e.type == "final"]
    committed = [w for e in finals for w in e.words]
    assert " ".join(w.word.strip() for w in committed) == SCRIPT  # nothing lost, nothing doubled, no garbled word
    for i, w in enumerate(committed):  # times are from the start of the stream, whatever was trimmed
        assert w.start == pytest.approx(i * 0.4, abs=1e-6) and w.end == pytest.approx((i + 1) * 0.4, abs=1e-6)
    assert any(e.type == "partial" and "~" in e.text for e in events)  # the word being said shows as partial only
    assert all("~" not in e.text for e in finals)
    assert [e for e in events if e.type == "partial"][-1].text == ""  # the partial line is cleared at the end


def test_buffer_is_trimmed_at_committed_segment_ends_and_prompted_with_what_was_cut():
    options = StreamOptions(vad=False, step_s=0.5, context_s=0.0, start_commit_s=0)  # no committed context kept: cut at the segment end itself
    stream, decoder, _ = run_scripted(SCRIPT, options, seconds=6.0)
    starts = [start for start, _, _ in decoder.calls]
    assert starts == sorted(starts) and max(starts) > 0  # the buffer moved forward
    for start, _, prompt in decoder.calls:
        # every cut is at a segment end (after words 4, 8, 12: 1.6 s, 3.2 s, 4.8 s) and the prompt is what lies before it
        assert start in (0.0, 1.6, 3.2, 4.8)
        assert prompt == " ".join(SCRIPT.split()[: round(start / 0.4)])
    assert max(length for _, length, _ in decoder.calls) < 3.0  # never the whole stream


def test_a_long_segment_is_cut_at_the_last_committed_word():
    options = StreamOptions(vad=False, step_s=0.5, max_buffer_s=2.0, hard_buffer_s=4.0, context_s=0.0, start_commit_s=0)
    decoder = ScriptedDecoder(SCRIPT)
    decoder_no_segments = lambda audio, prompt, prefix: [  # noqa: E731 - the same speaker, but Whisper never ends a segment
        TimedWord(w.word, w.start, w.end, w.probability, False) for w in decoder(audio, prompt)]
    stream = StreamingTranscriber(options=options, decoder=decoder_no_segments)
    decoder.transcriber = stream
    events = []
    for _ in range(60):
        events += stream.accept(np.zeros(1600, dtype=np.float32))
    events += stream.finish()
    assert " ".join(w.word.strip() for e in events if e.type == "final" for w in e.words) == SCRIPT
    assert max(length for _, length, _ in decoder.calls) <= 2.0 + 0.5 + 0.4  # cut back once past max_buffer_s


LONG_SCRIPT = SCRIPT + " that they are endowed by their creator with certain unalienable rights"


def test_cuts_keep_context_s_of_committed_speech_forced_as_the_prefix():
    """With ``context_s``, the buffer is cut only where that much committed speech stays in front of the new words;
    what stays is forced as the decode's prefix (less its last word), what was cut goes to the prompt."""
    options = StreamOptions(vad=False, step_s=0.5, context_s=2.0)
    decoder = ScriptedDecoder(LONG_SCRIPT)
    prefixes = []
    stream = StreamingTranscriber(options=options, decoder=lambda audio, prompt, prefix: prefixes.append(prefix) or decoder(audio, prompt))
    decoder.transcriber = stream
    events = []
    for _ in range(110):  # 11 s of the 10.4-s script
        events += stream.accept(np.zeros(1600, dtype=np.float32))
    events += stream.finish()
    assert " ".join(w.word.strip() for e in events if e.type == "final" for w in e.words) == LONG_SCRIPT
    starts = [start for start, _, _ in decoder.calls]
    assert starts == sorted(starts) and max(starts) >= 3.2  # the buffer still moves forward
    script = LONG_SCRIPT.split()
    for (start, _, prompt), prefix in zip(decoder.calls, prefixes):
        assert start in (0.0, 1.6, 3.2, 4.8, 6.4, 8.0)  # at segment ends only
        assert prompt == " ".join(script[: round(start / 0.4)])
        if start > 0:
            # >= 2 s of committed words lie between the cut and the new words: they are the prefix
            assert len(prefix.split()) >= round(2.0 / 0.4) - 1
            assert prefix == " ".join(script[round(start / 0.4) : round(start / 0.4) + len(prefix.split())])


def test_context_is_kept_at_cuts_inside_an_utterance_but_not_across_a_pause():
    """A scripted VAD: speech 0.5-7 s, a 0.8-s pause, speech 7.8-9.5 s, a 3-s pause, speech 12.5-14 s. Inside the first
    utterance cuts keep ~``context_s`` of it (forced as the prefix); after either pause the buffer begins at the
    pre-roll with nothing forced (carried over a pause, context made Whisper run "Americans. Ask" into "Americans
    asked"). Word times stay on the stream's clock, and no word is committed twice."""

    speech = [(0.5, 7.0), (7.8, 9.5), (12.5, 14.0)]

    def spoken(start: float, end: float) -> list[TimedWord]:
        """One word per 0.5 s of speech inside [start, end): 'w1' at 1.0-1.5 s, and so on; times from ``start``."""
        out = []
        for a, b in speech:
            t = a
            while t + 0.5 <= b + 1e-6:
                if t >= start - 1e-6 and t + 0.5 <= end + 1e-6:
                    out.append(TimedWord(f" w{round(t * 10)}", round(t - start, 3), round(t + 0.5 - start, 3), 0.9))
                t += 0.5
        return out

    calls = []
    stream: StreamingTranscriber | None = None

    def decoder(audio, prompt, prefix):
        start = stream._buffer.start / SR
        calls.append((start, len(audio) / SR, prefix))
        return spoken(start, start + len(audio) / SR)

    options = StreamOptions(pause_s=0.5, preroll_s=0.3, step_s=0.5, context_s=2.0, max_buffer_s=3.0, hard_buffer_s=6.0)
    stream = StreamingTranscriber(options=options, vad=ScriptedVad(speech), decoder=decoder)
    events = []
    for _ in range(150):  # 15 s in 0.1-s chunks
        events += stream.accept(np.zeros(1600, dtype=np.float32))
    events += stream.finish()
    committed = [w for e in events if e.type == "final" for w in e.words]
    assert [w.word for w in committed] == [w.word for w in spoken(0.0, 15.0)]  # every word once, in order
    for w in committed:  # on the stream's clock: 'wNN' was said from NN/10 s
        assert w.start == pytest.approx(int(w.word[2:]) / 10, abs=1e-3)
    cut = [c for c in calls if c[0] > 0.2 + 0.1 and c[0] + c[1] < 7.7]  # after a cut inside the first utterance
    assert cut and all(c[2] for c in cut)  # committed words stay in front of the new ones, forced as the prefix
    for start, _, prefix in cut:
        # the prefix leaves out the last committed word (the next 0.5 s); the cut was >= context_s before its end
        assert int(prefix.split()[-1][1:]) / 10 + 1.0 - start >= 2.0 - 1e-6
    for onset in (7.8, 12.5):
        after = [c for c in calls if onset - 0.3 < c[0] + c[1] <= onset + 2.5]
        # after a pause: the pre-roll only, and nothing to force until words of this utterance are committed
        assert after and all(start == pytest.approx(onset - 0.3, abs=0.06) for start, _, _ in after) and after[0][2] == ""


def test_speech_gate_opens_on_speech_and_closes_after_a_pause():
    gate = SpeechGate(threshold=0.5, exit_threshold=0.35, pause_windows=3, onset_windows=2)
    probs = [0.1, 0.9, 0.2, 0.9, 0.9, 0.9, 0.4, 0.2, 0.9, 0.1, 0.1, 0.1, 0.1]
    assert [gate.update(p) for p in probs] == [
        "silence", "silence", "silence", "silence", "onset", "speech", "speech",  # 0.4 is neither: speech goes on
        "speech", "speech", "speech", "speech", "pause", "silence",
    ]


def test_vad_gating_skips_silence_and_finalises_at_a_pause():
    """A scripted VAD model: speech from 1 s to 3 s, then silence. The decoder is only called on the speech."""


    calls = []

    def decoder(audio, prompt, prefix):
        calls.append(len(audio) / SR)
        return words("one two three", step=0.5)

    stream = StreamingTranscriber(options=StreamOptions(pause_s=0.5, preroll_s=0.3, step_s=0.5), vad=ScriptedVad([(1.0, 3.0)]), decoder=decoder)
    events = []
    for _ in range(60):  # 6 s in 0.1-s chunks
        events += stream.accept(np.zeros(1600, dtype=np.float32))
    finals = [e for e in events if e.type == "final"]
    assert text([w for e in finals for w in e.words]) == "one two three"
    # the buffer began at the pre-roll before the speech: word times are shifted onto the stream's clock
    assert finals[0].start == pytest.approx(1.0 - 0.3 + 0.064, abs=0.07)
    assert max(calls) < 3.0  # silence before the speech never reached the decoder
    assert stream.finish() == []  # the pause already finalised everything


def test_regions_from_probabilities_hysteresis_lengths_and_padding():
    w = 512 / SR  # one window in seconds
    probs = [0.0] * 10 + [0.9] * 20 + [0.4] * 2 + [0.9] * 10 + [0.0] * 20 + [0.8] * 3 + [0.0] * 20 + [0.9] * 15
    opts = VadOptions(min_speech_ms=250, min_silence_ms=100, speech_pad_ms=0)
    regions = regions_from_probabilities(probs, len(probs) * 512, opts)
    # windows 10..42 one region (0.4 is above the exit threshold), 3 windows (96 ms) too short, the last runs to the end
    assert [(round(s / 512), round(e / 512)) for s, e in regions] == [(10, 42), (85, 100)]
    padded = regions_from_probabilities(probs, len(probs) * 512, VadOptions(speech_pad_ms=30))
    assert padded[0][0] == 10 * 512 - 480 and padded[-1][1] == len(probs) * 512
    split = regions_from_probabilities([0.9] * 40 + [0.1] * 3 + [0.9] * 40, 83 * 512, VadOptions(max_speech_s=50 * w, speech_pad_ms=0, min_silence_ms=200))
    assert [(round(s / 512), round(e / 512)) for s, e in split] == [(0, 40), (43, 83)]


def test_stream_options_reject_nonsense():
    from tingxie.errors import OptionError

    with pytest.raises(OptionError, match="step_s"):
        StreamOptions(step_s=0)
    with pytest.raises(OptionError, match="hard_buffer_s"):
        StreamOptions(max_buffer_s=20, hard_buffer_s=10)
    with pytest.raises(OptionError, match="context_s"):
        StreamOptions(context_s=-1)
    with pytest.raises(OptionError, match="context_s"):
        StreamOptions(context_s=10, max_buffer_s=10)


# ------------------------------------------------------------------------------------------ real VAD, audio plumbing


def test_packaged_silero_vad_finds_speech_and_streams_like_batch():
    from tingxie.audio import decode_audio
    from tingxie.vad import load_vad, speech_timestamps

    vad = load_vad()
    jfk = decode_audio(audio_path("jfk"))
    regions = speech_timestamps(jfk, VadOptions(min_silence_ms=500), vad)
    assert regions and regions[0][0] < 0.6 * SR and regions[-1][1] > 10.0 * SR
    assert sum(e - s for s, e in regions) < 0.95 * len(jfk)  # the pauses are not speech
    assert speech_timestamps(decode_audio(audio_path("silence")), VadOptions(), vad) == []
    stream = vad.stream()
    pieces = np.concatenate([stream.accept(jfk[i : i + 777]) for i in range(0, len(jfk), 777)])
    whole = vad.probabilities(jfk)
    np.testing.assert_allclose(pieces, whole[: len(pieces)], atol=1e-6)
    batch = vad.probabilities_batch([jfk[:40000], jfk])
    np.testing.assert_allclose(batch[1], whole, atol=1e-6)


def test_vad_scored_in_overlapping_pieces_on_two_threads_finds_the_same_speech():
    from tingxie.audio import decode_audio
    from tingxie.batched import pack_regions
    from tingxie.vad import load_vad, regions_from_probabilities

    vad = load_vad()
    speech = decode_audio(audio_path("real_concat"))  # 84 s of speech with pauses: 11 pieces of 8 s
    whole = vad.probabilities(speech)
    pieces = vad.probabilities_in_pieces(speech, threads=2)
    assert pieces.shape == whole.shape
    assert np.mean(np.abs(pieces - whole) > 0.1) < 0.02  # only a few windows near the seams differ
    opts = VadOptions(min_silence_ms=160, speech_pad_ms=200, max_speech_s=29.5)
    chunks = pack_regions(regions_from_probabilities(whole, len(speech), opts))
    found = pack_regions(regions_from_probabilities(pieces, len(speech), opts))
    assert len(found) == len(chunks) == 3
    for a, b in zip(found, chunks):  # the same chunks, a boundary at most a few 32-ms windows apart
        assert abs(a.start - b.start) <= 4 * 512 and abs(a.end - b.end) <= 4 * 512, (found, chunks)
    one_thread = vad.probabilities_in_pieces(speech, threads=1)
    np.testing.assert_allclose(one_thread, pieces, atol=1e-6)  # the threads only share out the pieces
    short = speech[:5000]  # shorter than one piece: the same as one pass
    np.testing.assert_allclose(vad.probabilities_in_pieces(short), vad.probabilities(short), atol=1e-6)
    assert vad.probabilities_in_pieces(np.zeros(0, np.float32)).shape == (0,)

def test_pcm16_and_resampling_to_16k():
    from tingxie.streaming.audio_in import Resampler, pcm16_to_float

    pcm = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    np.testing.assert_allclose(pcm16_to_float(pcm), [0.0, 0.5, -1.0, 32767 / 32768])
    rate = 48000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    resample = Resampler(rate)
    out = np.concatenate([resample(tone[i : i + 4800]) for i in range(0, rate, 4800)] + [resample.flush()])
    assert abs(len(out) - SR) <= 64
    spectrum = np.abs(np.fft.rfft(out[:SR]))
    assert abs(np.argmax(spectrum) * SR / len(out[:SR]) - 440) < 3  # the tone survives at its pitch


# ------------------------------------------------------------------------------------------ the CLI


def test_stream_cli_help_states_defaults(capsys):
    from tingxie.cli import main

    with pytest.raises(SystemExit):
        main(["stream", "--help"])
    out = capsys.readouterr().out
    for flag in ("--simulate-realtime", "--output", "--step", "--pause", "--vad", "--threads"):
        assert flag in out
    assert out.count("(default:") >= 15


def test_stream_cli_missing_file_is_a_one_line_error(capsys, tmp_path):
    from tingxie.cli import main

    assert main(["stream", "--simulate-realtime", str(tmp_path / "nope.wav")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tingxie stream: error:") and "nope.wav" in err and "\n" not in err


def test_stream_cli_plays_a_file_and_appends_every_final_line(tmp_path, capsys, tiny_en, monkeypatch):
    import tingxie.api

    monkeypatch.setattr(tingxie.api, "load_model", lambda *a, **k: tiny_en)  # the session's model, not a second load
    transcript = tmp_path / "live.txt"
    transcript.write_text("earlier line\n")
    from tingxie.cli import main

    status = main(["stream", "--simulate-realtime", str(audio_path("jfk")), "--speed", "4", "--output", str(transcript), "--threads", "0"])
    assert status == 0
    out = capsys.readouterr().out
    lines = transcript.read_text().splitlines()
    assert lines[0] == "earlier line"  # appended, not overwritten
    assert lines[1:] == [line for line in out.splitlines() if line]  # every final line, as printed
    spoken = " ".join(line.split("] ", 1)[1] for line in lines[1:]).lower()
    assert "ask not what your country can do for you" in spoken.replace(",", "").replace("!", "").replace(".", "")
    assert all(line.startswith("[00:") for line in lines[1:])
    assert "\x1b" not in out  # not a terminal: no partial lines
