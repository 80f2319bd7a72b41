"""A stream's first words (issue 22): nothing final before a decode of ``start_commit_s`` of audio, a pause before then
held (scripted VAD and decoder, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from test_streaming import SR, ScriptedVad

from tingxie.errors import OptionError
from tingxie.streaming.events import TimedWord
from tingxie.streaming.options import StreamOptions
from tingxie.streaming.transcriber import StreamingTranscriber

FIRST = [(" And", 0.5, 0.9), (" so", 0.9, 1.3), (" my", 1.3, 1.9), (" fellow", 1.9, 2.4)]
MISREAD = [(" And", 0.5, 0.9), (" so", 0.9, 1.3), (" am", 1.3, 1.6), (" I", 1.6, 1.9), (" fellow", 1.9, 2.4)]
RUN_ON = [(" asked", 3.6, 4.0), (" not", 4.0, 4.4)]  # the next utterance, heard after the first one's words
SECOND = [(" Ask", 3.6, 4.0), (" not", 4.0, 4.4), (" what", 4.4, 4.8), (" your", 4.8, 5.2), (" country", 5.2, 5.8)]


class ColdDecoder:
    """tiny.en on jfk's opening: a buffer of the first words alone (under 3.5 s) reads "am I" for "my"; with the next
    utterance's start heard too it reads "my", and runs the two together ("Americans asked not")."""

    def __init__(self):
        self.stream: StreamingTranscriber | None = None
        self.buffers: list[tuple[float, float]] = []  # (start, end) in stream seconds

    def __call__(self, audio, prompt, prefix):
        assert self.stream is not None
        start = self.stream._buffer.start / SR
        end = start + len(audio) / SR
        self.buffers.append((start, end))
        if start < 0.5:
            script = MISREAD if end - start < 3.5 else FIRST + RUN_ON
        else:
            script = SECOND
        return [TimedWord(w, a - start, b - start, 0.9) for w, a, b in script if b <= end]


def stream_of(speech, seconds, options=StreamOptions()):
    decoder = ColdDecoder()
    stream = StreamingTranscriber(options=options, vad=ScriptedVad(speech), decoder=decoder)
    decoder.stream = stream
    finals = []
    for k in range(int(seconds * 10)):
        finals += [((k + 1) / 10, e) for e in stream.accept(np.zeros(1600, dtype=np.float32)) if e.type == "final"]
    finals += [(seconds, e) for e in stream.finish() if e.type == "final"]
    return decoder, finals


def test_the_first_words_wait_over_a_pause_for_a_longer_buffer_then_the_next_utterance_starts_afresh():
    assert StreamOptions().start_commit_s == 4.0
    decoder, finals = stream_of([(0.5, 2.5), (3.5, 6.5)], seconds=8.0)
    assert finals[0][1].text == "And so my fellow"  # not "And so am I fellow", the 2.3-s buffer's reading
    assert finals[0][0] >= 0.2 + 4.0  # from the first decode of 4 s (the buffer began at the 0.3-s pre-roll)
    assert " ".join(e.text for _, e in finals) == "And so my fellow Ask not what your country"  # not "asked not"
    # once the first words are final, the buffer starts where the second utterance's own would have
    after = [start for start, end in decoder.buffers if end > finals[0][0] + 0.05]
    assert after and all(start == pytest.approx(3.5 - 0.3, abs=0.07) for start in after)


def test_a_speaker_who_says_only_a_few_words_gets_them_once_the_held_silence_fills_the_buffer():
    decoder, finals = stream_of([(0.5, 2.5)], seconds=8.0)
    assert [e.text for _, e in finals] == ["And so am I fellow"]  # all there was to hear: the short buffer's reading
    assert finals[0][0] == pytest.approx(0.2 + 4.0, abs=0.1)  # not held until the stream ends (8 s)
    assert max(end - start for start, end in decoder.buffers) < 2.9  # the held silence is not decoded


def test_without_a_start_wait_the_first_utterance_ends_at_its_pause_and_bad_values_are_refused():
    _, plain = stream_of([(0.5, 2.5), (3.5, 6.5)], seconds=8.0, options=StreamOptions(start_commit_s=0))
    assert " ".join(e.text for t, e in plain if t < 3.2) == "And so am I fellow"  # final by the pause, misread
    with pytest.raises(OptionError, match="start_commit_s"):
        StreamOptions(start_commit_s=-1)


@pytest.mark.parametrize("engine", ["tiny_en_default", "tiny_en_torch"])
def test_a_stream_s_opening_words_come_out_right_on_the_real_model_with_the_defaults(engine, request):
    """jfk's opening, streamed in 100-ms chunks with the default options: "And so my fellow Americans", not "And so am
    I" (what a 2.1-3.0 s first buffer reads) on the default engine (ONNX Runtime int8) and on PyTorch."""
    from test_streaming import audio_path

    from tingxie.audio import decode_audio
    from tingxie.normalizers import normalize

    audio = decode_audio(audio_path("jfk"))
    stream = StreamingTranscriber(request.getfixturevalue(engine), StreamOptions(language="en"))
    finals = [e.text for k in range(0, len(audio), 1600) for e in stream.accept(audio[k : k + 1600]) if e.type == "final"]
    finals += [e.text for e in stream.finish() if e.type == "final"]
    spoken = normalize(" ".join(finals), "en")
    assert spoken.startswith("and so my fellow americans"), spoken
    assert "ask not what your country can do for you" in spoken
