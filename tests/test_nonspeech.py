"""Non-speech windows: laughter gives no text with the defaults, and speech the model fails on keeps its words."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, require_shared

from tingxie.audio import decode_audio
from tingxie.decoding.nonspeech import MIN_SPEECH_SECONDS, is_nonspeech, ran_out_of_temperatures, speech_seconds
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


@pytest.mark.parametrize("source", ["path", "samples"])
def test_laughter_gives_no_text_with_the_cli_defaults(tiny_en_default, source):
    require_shared()
    path = DATA / "misc" / "laughter.mp3"
    audio = str(path) if source == "path" else decode_audio(str(path))
    result = tiny_en_default.transcribe(audio, beam_size=5, best_of=5)
    assert result.text == "" and result.segments == []


def test_a_window_s_samples_read_again_leave_the_windows_as_they_were(monkeypatch):
    """``StreamedMel.samples`` (a long recording: nothing of the first pass kept) gives the exact slice, and the
    window reading that it restarts gives the same windows as before."""
    from tingxie import mel_source
    from tingxie.audio import N_SAMPLES
    from tingxie.mel import NumpyMelFrontEnd, log_mel_spectrogram_numpy

    monkeypatch.setattr(mel_source, "KEEP_FIRST_PASS_BYTES", 0)
    samples = (np.random.default_rng(3).standard_normal(16_000 * 70) * 0.1).astype(np.float32)
    expected = log_mel_spectrogram_numpy(samples, 80, padding=N_SAMPLES)
    mel = mel_source.StreamedMel(NumpyMelFrontEnd(80), lambda: (samples[i : i + 16_000] for i in range(0, samples.size, 16_000)))
    assert np.array_equal(mel.window(0, 3000), expected[:, :3000])
    assert np.array_equal(mel.samples(3000 * 160, 6000 * 160), samples[480_000:960_000])
    assert mel.samples(69 * 16_000, 80 * 16_000).size == 16_000  # up to the end only
    for seek in (3000, 6000):
        assert np.array_equal(mel.window(seek, 3000), expected[:, seek : seek + 3000])
