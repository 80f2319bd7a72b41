"""The calls the API, the CLI, the server and batch jobs make: a finished transcription gets its speakers, the speaker
turns found on a thread of their own while the recording is transcribed (``start_speakers``) or after it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AudioDecodeError, OptionError
from ..results import TranscriptionResult
from .pipeline import Diarization, DiarizeSettings, diarize_samples
from .resegment import assign_speakers

SPEAKER_THREADS = 1  # the speaker work beside a transcription: one thread, whatever the cores

if TYPE_CHECKING:
    from ..options import TranscribeOptions


def split_names(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """'Ana, Ben' or ('Ana', 'Ben') -> ('Ana', 'Ben')."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(v).strip() for v in items if str(v).strip())


def settings_from_options(options: TranscribeOptions, references: tuple[Any, ...] | None = None,
                          names: tuple[str, ...] | None = None) -> DiarizeSettings:
    """The pipeline's settings from the transcription options; the reference voices decoded (paths, bytes, arrays),
    or taken from ``references`` and ``names`` where the caller holds them apart (the server's uploads)."""
    from ..audio import decode_audio

    sources = references if references is not None else split_names(options.speaker_references)
    voices = []
    for source in sources:
        try:
            samples = source if isinstance(source, np.ndarray) else decode_audio(source)
        except AudioDecodeError as e:
            raise AudioDecodeError(f"speaker reference {_name(source)} is not usable audio: {e}") from e
        if samples.size < 16000 // 2:
            raise OptionError(f"speaker reference {_name(source)} holds {samples.size / 16000:.2f} s of audio; give at least 1 s of that voice")
        voices.append(samples)
    return DiarizeSettings(num_speakers=options.num_speakers, min_speakers=options.min_speakers or 1, max_speakers=options.max_speakers,
                           speaker_names=names if names is not None else split_names(options.speaker_names), speaker_references=tuple(voices))


def diarize_result(model: Any, samples: np.ndarray, result: TranscriptionResult, options: TranscribeOptions, *,
                   progress: bool = False, references: tuple[Any, ...] | None = None, names: tuple[str, ...] | None = None) -> TranscriptionResult:
    """``result`` (transcribed from ``samples``, with word timestamps) with a speaker on every segment and word, its
    segments split where the speaker changes. No speech in the audio leaves the result as it is."""
    if not result.segments:
        return result
    return _with_speakers(model, result, diarize_samples(samples, settings_from_options(options, references, names), progress=progress))


def _with_speakers(model: Any, result: TranscriptionResult, diarization: Diarization) -> TranscriptionResult:
    tokenizer = model.tokenizer(result.language) if model is not None else None
    return assign_speakers(result, diarization, tokenizer)[0]


class SpeakerTask:
    """The speaker turns of a recording, found on a thread beside its transcription: the speaker encoder and the VAD
    run while the decoder waits on its own small steps, so most of their time is hidden (``speakers(result)`` waits
    for what is left). ``cancel()`` stops it between batches of windows when the transcription failed."""

    def __init__(self, samples: np.ndarray, settings: DiarizeSettings, progress: bool = False) -> None:
        self._stop = threading.Event()
        self._diarization: Diarization | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(samples, settings, progress), name="tingxie-speakers", daemon=True)
        self._thread.start()

    def _run(self, samples: np.ndarray, settings: DiarizeSettings, progress: bool) -> None:
        try:
            # one thread: the transcription beside it keeps the cores (splitting the VAD and the encoder costs ~10 % more CPU)
            self._diarization = diarize_samples(samples, settings, progress=progress, stop=self._stop, threads=SPEAKER_THREADS)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, raised there
            self._error = e

    def diarization(self) -> Diarization:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._diarization is not None
        return self._diarization

    def apply(self, model: Any, result: TranscriptionResult) -> TranscriptionResult:
        """``result`` (transcribed from the same samples, with word timestamps) with its speakers."""
        if not result.segments:
            self.cancel()
            return result
        return _with_speakers(model, result, self.diarization())

    def cancel(self) -> None:
        self._stop.set()

    def __enter__(self) -> SpeakerTask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()  # a transcription that failed leaves no speaker work running; a finished task ignores it


def start_speakers(samples: np.ndarray, options: TranscribeOptions, *, progress: bool = False, references: tuple[Any, ...] | None = None,
                   names: tuple[str, ...] | None = None) -> SpeakerTask:
    """Start finding the speaker turns of ``samples`` (the reference voices are read here, so a bad one is said before
    any work); ``task.apply(model, result)`` once ``result`` is transcribed from them."""
    return SpeakerTask(samples, settings_from_options(options, references, names), progress)


def diarize_transcription(model: Any, audio: Any, result: TranscriptionResult, options: TranscribeOptions, *,
                          progress: bool = False) -> TranscriptionResult:
    """``diarize_result`` for any audio the API takes (a path, bytes, a file object or 16 kHz samples)."""
    from ..audio import decode_audio

    if not result.segments:
        return result
    samples = audio if isinstance(audio, np.ndarray) else decode_audio(audio)
    return diarize_result(model, samples, result, options, progress=progress)


def _name(source: Any) -> str:
    return repr(str(source)) if isinstance(source, str) else "(uploaded audio)"
