"""Non-speech windows (laughter, music, noise) that the reference's silence rule lets through (issue 23).

The reference calls a window silence when <|nospeech|> is likely (> 0.6) and the text unlikely. On laughter tiny.en
gives <|nospeech|> only 0.36 and, after every temperature failed, writes " Thank you for helping everybody."
(avg_logprob -2.79). Neither number separates it from real speech the model fails on: radio-like English at 6-10 dB
SNR fails every temperature with <|nospeech|> 0.19-0.59 and avg_logprob -2.0 to -4.2, and still holds words that
were said. The VAD does: over every file of ``../shared``'s manifests and their radio-like versions, the windows that
failed every temperature held 0.00-0.22 s of VAD speech when nothing was said (laughter, fr_radio's music intro) and
1.09 s or more when something was (bench/RESULTS.md, issue 23). So such a window is dropped as silence when the VAD
hears less than ``MIN_SPEECH_SECONDS`` in it.

The other window the model doubts is one where <|nospeech|> is likely but the text likely enough to be kept (the
reference's escape from its silence rule): laughter cut out by the VAD as a 0.7-s chunk (VAD-batched mode) decodes at
the first temperature to " Thank you." with <|nospeech|> 0.84 and avg_logprob -0.90. It is judged the same way.
With one temperature (no fallback, the reference's outputs that the golden tests compare against) nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..options import TranscribeOptions
from .window import DecodingResult

MIN_SPEECH_SECONDS = 0.5  # non-speech windows measured at <= 0.22 s of VAD speech, failed speech windows at >= 1.09 s
SPEECH_PROBABILITY = 0.5  # a 32-ms VAD frame at or above this counts as speech (the VAD's own default threshold)


def ran_out_of_temperatures(result: DecodingResult, options: TranscribeOptions, *, single_pass: bool = False) -> bool:
    """The temperature fallback tried every temperature and the last decode still failed (too repetitive or too
    unlikely); False with one temperature (unless ``single_pass``, see ``is_nonspeech``), or with the reference's
    switches off."""
    from .fallback import needs_fallback

    if (len(options.temperature) < 2 and not single_pass) or options.no_speech_threshold is None or options.logprob_threshold is None:
        return False
    return result.temperature == options.temperature[-1] and needs_fallback(result, options)


def speech_seconds(samples: np.ndarray) -> float:
    """Seconds of 16 kHz ``samples`` that the packaged Silero VAD calls speech."""
    from ..vad import load_vad

    return 0.0 if samples.size == 0 else heard_seconds(load_vad().probabilities(samples))


def heard_seconds(probabilities: np.ndarray) -> float:
    """Seconds of speech in the VAD's probabilities of 32-ms frames (of a run over the window or over the recording)."""
    from ..vad import SAMPLE_RATE, WINDOW

    return float((probabilities >= SPEECH_PROBABILITY).sum()) * WINDOW / SAMPLE_RATE


def model_doubts(result: DecodingResult, options: TranscribeOptions, *, single_pass: bool = False) -> bool:
    """The decode's text is one the model itself doubts: it failed at every temperature, or <|nospeech|> was likely
    and the text kept only for its likelihood (a window that ``is_silence`` did not drop); False with one temperature
    (unless ``single_pass``, see ``is_nonspeech``)."""
    if (len(options.temperature) < 2 and not single_pass) or options.no_speech_threshold is None:
        return False
    return result.no_speech_prob > options.no_speech_threshold or ran_out_of_temperatures(result, options, single_pass=single_pass)


def is_nonspeech(result: DecodingResult, options: TranscribeOptions, samples: Callable[[], np.ndarray | None], *,
                 single_pass: bool = False) -> bool:
    """Whether a window whose text the model doubts (``model_doubts``) holds no speech by the VAD: its text is then a
    hallucination to drop. ``samples()`` gives the window's audio (None where it cannot be read again).
    ``single_pass``: the caller decodes at one temperature by design (a stream, whose hypotheses must stay stable),
    not as the reference's outputs, so that one temperature is every temperature it tries."""
    def heard() -> float | None:
        audio = samples()
        return None if audio is None else speech_seconds(audio)

    return hears_no_speech(result, options, heard, single_pass=single_pass)


def hears_no_speech(result: DecodingResult, options: TranscribeOptions, speech: Callable[[], float | None], *,
                    single_pass: bool = False) -> bool:
    """``is_nonspeech`` given the seconds of VAD speech in the window (``speech()``, None where not known; asked only
    for a window the model doubts)."""
    if not model_doubts(result, options, single_pass=single_pass):
        return False
    heard = speech()
    return heard is not None and heard < MIN_SPEECH_SECONDS
