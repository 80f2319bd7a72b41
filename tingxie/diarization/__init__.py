"""Speaker diarization: who said what, offline, with the GE2E speaker encoder on ONNX Runtime.

    >>> diarization = diarize_samples(samples)                 # speaker turns from the audio alone
    >>> result = diarize_result(model, samples, result, options)  # a transcription's segments and words get speakers
    >>> with start_speakers(samples, options) as speakers:         # or: the turns found while the samples are transcribed
    ...     result = speakers.apply(model, model.transcribe(samples, options))
"""

from .apply import SpeakerTask, diarize_result, diarize_transcription, start_speakers
from .encoder import SpeakerModelUnavailableError, load_encoder
from .pipeline import Diarization, DiarizeSettings, diarize_samples
from .timeline import SpeakerTurn

__all__ = ["Diarization", "diarize_result", "diarize_transcription", "DiarizeSettings", "SpeakerModelUnavailableError", "SpeakerTask", "SpeakerTurn",
           "diarize_samples", "load_encoder", "start_speakers"]
