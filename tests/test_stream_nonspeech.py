"""Streams drop non-speech as offline does (issue 22): a decode the model doubts over audio in which the Silero VAD
hears under 0.5 s of speech gives no text (``tingxie.decoding.nonspeech``); speech keeps its words."""

from __future__ import annotations

import numpy as np
from conftest import DATA, require_shared

from tingxie.audio import decode_audio
from tingxie.streaming.options import StreamOptions
from tingxie.streaming.transcriber import StreamingTranscriber


def _stream(model, audio: np.ndarray, options: StreamOptions) -> list:
    stream = StreamingTranscriber(model, options)
    events = []
    for i in range(0, len(audio), 1600):  # 0.1-s chunks, as a microphone delivers them
        events += stream.accept(audio[i : i + 1600])
    return events + stream.finish()


def test_tingxie_stream_writes_nothing_for_laughter(tmp_path, capsys, tiny_en_default, monkeypatch):
    """tiny.en int8 (the stream's default engine) read the laughter as " Thank you." (<|nospeech|> 0.67, avg_logprob
    -0.86): a final "you." before the rule."""
    require_shared()
    import tingxie.api

    monkeypatch.setattr(tingxie.api, "load_model", lambda *a, **k: tiny_en_default)  # the session's model, not a second load
    transcript = tmp_path / "live.txt"
    from tingxie.cli import main

    status = main(["stream", "--simulate-realtime", str(DATA / "misc" / "laughter.mp3"), "--speed", "8", "--output", str(transcript),
                   "--threads", "0"])
    assert status == 0
    assert capsys.readouterr().out == "" and transcript.read_text() == ""


def test_a_stream_without_the_vad_gate_writes_nothing_for_laughter(tiny_en_default):
    """Without the gate every 0.5 s of laughter is decoded ("I'm sorry, I'm sorry, I got it.", avg_logprob -1.13):
    each such decode failed and the VAD hears 0.22 s of speech in the whole file. (Speech keeps its words: the jfk
    streams of test_streaming.py and test_streaming_ws.py decode through the same check.)"""
    require_shared()
    laughter = decode_audio(str(DATA / "misc" / "laughter.mp3"))
    events = _stream(tiny_en_default, laughter, StreamOptions(vad=False))
    assert [e.text for e in events if e.text] == []


def test_a_stream_s_one_temperature_is_every_temperature_it_tries():
    """Offline, one temperature is the reference's path and is never judged; a stream decodes once by design."""
    from tingxie.decoding.nonspeech import model_doubts
    from tingxie.decoding.window import DecodingResult
    from tingxie.options import TranscribeOptions

    laughter = DecodingResult(tokens=[], text=" Thank you.", language="en", avg_logprob=-0.86, no_speech_prob=0.67, temperature=0.0,
                              compression_ratio=0.56)
    failed = DecodingResult(tokens=[], text=" I'm sorry, I'm sorry, I got it.", language="en", avg_logprob=-1.13, no_speech_prob=0.39,
                            temperature=0.0, compression_ratio=1.03)
    speech = DecodingResult(tokens=[], text=" Ask not.", language="en", avg_logprob=-0.3, no_speech_prob=0.02, temperature=0.0,
                            compression_ratio=0.6)
    one = TranscribeOptions(temperature=(0.0,))
    assert not model_doubts(laughter, one) and not model_doubts(failed, one)
    assert model_doubts(laughter, one, single_pass=True) and model_doubts(failed, one, single_pass=True)
    assert not model_doubts(speech, one, single_pass=True)
