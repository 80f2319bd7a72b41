"""Speaker diarization: who said what, offline, with the GE2E speaker encoder on ONNX Runtime.

    >>> diarization = diarize_samples(samples)                 # speaker turns from the audio alone
    >>> result = diarize_result(model, samples, result, options)  # a transcription's segments and words get speakers
"""

from .apply import diarize_result, diarize_transcription
from .encoder import SpeakerModelUnavailableError, load_encoder
from .pipeline import Diarization, DiarizeSettings, diarize_samples
from .timeline import SpeakerTurn

__all__ = ["Diarization", "diarize_result", "diarize_transcription", "DiarizeSettings", "SpeakerModelUnavailableError", "SpeakerTurn", "diarize_samples",
           "load_encoder"]
