"""Non-speech windows: laughter gives no text with the defaults, in sequential and VAD-batched mode, on both engines,
and speech the model doubts keeps its words."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import DATA, require_shared

from tingxie.audio import decode_audio
from tingxie.decoding.nonspeech import MIN_SPEECH_SECONDS, is_nonspeech, model_doubts, ran_out_of_temperatures, speech_seconds
from tingxie.decoding.window import DecodingResult
from tingxie.options import TranscribeOptions


def _failed(temperature: float) -> DecodingResult:
    """What laughter decodes to at the last temperature (tiny.en int8): unlikely, <|nospeech|> below the reference's 0.6."""
    return DecodingResult(tokens=[], text=" Thank you for helping everybody.", language="en", avg_logprob=-2.79,
                          no_speech_prob=0.36, temperature=temperature, compression_ratio=0.8)


def test_only_a_window_that_failed_every_temperature_is_judged():
    options = TranscribeOptions()
    assert ran_out_of_temperatures(_failed(1.0), options)
    assert not ran_out_of_temperatures(_failed(0.4), options)  # a decode that stopped early passed a check
    # one temperature (the reference's outputs, as the golden tests decode): never
    assert not ran_out_of_temperatures(_failed(0.0), TranscribeOptions(temperature=(0.0,)))
    assert not ran_out_of_temperatures(_failed(1.0), TranscribeOptions(no_speech_threshold=None))
    read = []
    assert not is_nonspeech(_failed(0.4), options, lambda: read.append(1))
    assert read == [], "the audio is read only for a window that failed everywhere"


def test_a_likely_text_over_a_likely_nospeech_is_doubted_too():
    """VAD-batched laughter (a 0.7-s chunk) at the first temperature (tiny.en int8): <|nospeech|> 0.84, " Thank you." at
    avg_logprob -0.90, which the reference's silence rule keeps for its likelihood."""
    thank_you = DecodingResult(tokens=[], text=" Thank you.", language="en", avg_logprob=-0.90, no_speech_prob=0.84, temperature=0.0,
                               compression_ratio=0.56)
    assert model_doubts(thank_you, TranscribeOptions())
    assert model_doubts(_failed(1.0), TranscribeOptions())
    assert not model_doubts(replace(thank_you, no_speech_prob=0.3), TranscribeOptions())
    assert not model_doubts(thank_you, TranscribeOptions(temperature=(0.0,)))  # the reference's outputs: never
    assert not model_doubts(thank_you, TranscribeOptions(no_speech_threshold=None))


def test_the_vad_decides_between_speech_and_noise():
    require_shared()
    speech = decode_audio(str(DATA / "en" / "jfk.flac"))
    noise = np.random.default_rng(0).normal(0, 0.05, 16000 * 5).astype(np.float32)
    assert speech_seconds(speech) > 5 * MIN_SPEECH_SECONDS
    assert speech_seconds(noise) < MIN_SPEECH_SECONDS
    assert speech_seconds(np.zeros(0, np.float32)) == 0.0
    assert not is_nonspeech(_failed(1.0), TranscribeOptions(), lambda: speech)
    assert is_nonspeech(_failed(1.0), TranscribeOptions(), lambda: noise)
    assert not is_nonspeech(_failed(1.0), TranscribeOptions(), lambda: None)  # audio that cannot be read again


def test_laughter_gives_no_text_with_the_cli_defaults(tiny_en_default):
    """A file, read again for the window's audio (samples in memory: the torch test below)."""
    require_shared()
    result = tiny_en_default.transcribe(str(DATA / "misc" / "laughter.mp3"), beam_size=5, best_of=5)
    assert result.text == "" and result.segments == []


def test_laughter_gives_no_text_in_batched_mode(tiny_en_default):
    require_shared()
    from tingxie.batched import transcribe_batched

    laughter = decode_audio(str(DATA / "misc" / "laughter.mp3"))
    assert transcribe_batched(tiny_en_default, laughter, batch_size=4, beam_size=5, best_of=5).text == ""


@pytest.mark.parametrize("mode", ["sequential", "batched"])
def test_laughter_gives_no_text_on_the_torch_engine(tiny_en_torch, mode):
    """The API's defaults (greedy, the temperature fallback) on the PyTorch engine; speech keeps its words on every
    engine and mode with the rule on (tests/test_feature_matrix.py)."""
    require_shared()
    from tingxie.batched import transcribe_batched

    laughter = decode_audio(str(DATA / "misc" / "laughter.mp3"))
    result = transcribe_batched(tiny_en_torch, laughter, batch_size=4) if mode == "batched" else tiny_en_torch.transcribe(laughter)
    assert result.text == "" and result.segments == []


def test_every_log_mel_source_gives_a_window_s_audio():
    """A whole log-mel given its samples slices them; samples in memory are sliced, never read again."""
    from tingxie.mel import NumpyMelFrontEnd
    from tingxie.mel_source import ArrayMel, StreamedMel

    samples = (np.random.default_rng(4).standard_normal(16_000 * 3) * 0.1).astype(np.float32)
    assert np.array_equal(ArrayMel(np.zeros((80, 4800), np.float32), samples.size, 1.0, samples).samples(100, 900), samples[100:900])
    assert ArrayMel(np.zeros((80, 4800), np.float32)).samples(100, 900) is None  # a bare log-mel: nothing to judge
    opened = []
    mel = StreamedMel(NumpyMelFrontEnd(80), lambda: opened.append(1) or iter([samples]), samples)
    assert np.array_equal(mel.samples(16_000, 32_000), samples[16_000:32_000]) and opened == [1]  # the first pass only


def test_a_window_s_samples_read_again_leave_the_windows_as_they_were(monkeypatch):
    """``StreamedMel.samples`` (a long recording: nothing of the first pass kept) gives the exact slice, and the
    window reading that it restarts gives the same windows as before."""
    from tingxie import mel_source
    from tingxie.audio import N_SAMPLES
    from tingxie.mel import NumpyMelFrontEnd, log_mel_spectrogram_numpy

    monkeypatch.setattr(mel_source, "KEEP_FIRST_PASS_BYTES", 0)
    samples = (np.random.default_rng(3).standard_normal(16_000 * 70) * 0.1).astype(np.float32)
    expected = log_mel_spectrogram_numpy(samples, 80, padding=N_SAMPLES)
    readings = []

    def read():
        readings.append(1)
        return (samples[i : i + 16_000] for i in range(0, samples.size, 16_000))

    mel = mel_source.StreamedMel(NumpyMelFrontEnd(80), read)
    assert np.array_equal(mel.window(0, 3000), expected[:, :3000])
    assert np.array_equal(mel.samples(3000 * 160, 6000 * 160), samples[480_000:960_000])  # not read yet: read again
    assert mel.samples(69 * 16_000, 80 * 16_000).size == 16_000  # up to the end only
    for seek in (3000, 6000):
        assert np.array_equal(mel.window(seek, 3000), expected[:, seek : seek + 3000])
        before = len(readings)
        # the window just read: its audio is kept from the window reading, not read a third time
        assert np.array_equal(mel.samples(seek * 160, (seek + 3000) * 160), samples[seek * 160 : (seek + 3000) * 160])
        assert len(readings) == before
