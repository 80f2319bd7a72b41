"""The Python API: ``load_model(name_or_path)`` and ``WhisperModel.transcribe(audio, **options)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import chinese
from .audio import FRAMES_PER_SECOND, N_FRAMES, N_SAMPLES, SAMPLE_RATE, _is_tensor, decode_audio, pad_or_trim
from .engine import Engine, default_alignment_heads, window_features
from .errors import AudioDecodeError, OptionError
from .mel_source import ArrayMel, AudioFile, MelSource, file_mel, front_end_of, samples_mel
from .options import COMPUTE_TYPES, TranscribeOptions, build_options
from .results import Segment, TranscriptionResult
from .tokenizer import LANGUAGES, Tokenizer, get_tokenizer, normalize_language
from .transcribe import content_mel, iter_segments, seek_clips

if TYPE_CHECKING:  # torch is imported only when the PyTorch engine is chosen; the ONNX Runtime engine runs without it
    import torch

    from .vad import SpeechMap

# Shorter than this cannot hold a word; Whisper would only invent text for it.
MIN_AUDIO_SECONDS = 0.25
# Peak amplitude below -70 dBFS: digital silence or a muted input, never speech.
SILENCE_PEAK = 10 ** (-70 / 20)

_DTYPES = ("float32", "float16", "bfloat16")
BACKENDS = ("auto", "torch", "onnx")


def resolve_device(device: str | torch.device | None) -> torch.device:
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    import torch

    if dtype in (None, "auto"):
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise OptionError(f"dtype must be one of {', '.join(_DTYPES)} or auto, not {dtype!r}")
    return getattr(torch, dtype)


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str
    language_probs: dict[str, float] | None
    duration: float
    chinese_script: str = "as-is"


class WhisperModel:
    """A loaded Whisper model: its engine (what runs it), tokenizers and alignment heads."""

    def __init__(self, engine: Engine, *, name: str = "", alignment_heads: list[tuple[int, int]] | None = None, source: Path | None = None):
        self.engine = engine
        self.name = name
        self.source = source
        self.alignment_heads = alignment_heads or default_alignment_heads(engine.dims)

    @property
    def module(self) -> Any:
        """The engine's own model object (the PyTorch module, for training; the engine itself otherwise)."""
        return getattr(self.engine, "module", self.engine)

    @property
    def dims(self):
        return self.engine.dims

    @property
    def is_multilingual(self) -> bool:
        return self.engine.is_multilingual

    @property
    def description(self) -> str:
        """What runs the model, e.g. 'onnxruntime int8 (cpu)'."""
        return self.engine.description

    def tokenizer(self, language: str | None = None, task: str = "transcribe") -> Tokenizer:
        return get_tokenizer(self.is_multilingual, num_languages=self.engine.num_languages, language=language, task=task)

    def detect_language(self, audio: Any) -> tuple[str, dict[str, float]]:
        """The most likely language of the first 30 s and the probability of every language."""
        mel, _ = content_mel(self.engine, self._first_window(audio))
        return self._detect(mel)

    def _first_window(self, audio: Any) -> np.ndarray:
        """The first 30 s of samples; of a file, only they are decoded (an hour-long file was read whole)."""
        if isinstance(audio, np.ndarray) or _is_tensor(audio):
            return self._samples(audio)[:N_SAMPLES]
        chunks = (audio if isinstance(audio, AudioFile) else AudioFile(audio)).chunks(N_SAMPLES / SAMPLE_RATE)
        try:
            samples = next(chunks, np.zeros(0, np.float32))
        finally:
            chunks.close()
        check_length(samples.size, audio)
        return samples

    def _detect(self, mel: np.ndarray) -> tuple[str, dict[str, float]]:
        from .decoding.language import detect_language

        _, probs = detect_language(self.engine, window_features(self.engine, pad_or_trim(mel, N_FRAMES)), self.tokenizer())
        return max(probs[0], key=probs[0].get), probs[0]

    def _samples(self, audio: Any) -> np.ndarray:
        samples = audio if isinstance(audio, np.ndarray) else audio.decode() if isinstance(audio, AudioFile) else decode_audio(audio)
        check_length(samples.size, audio)
        return samples

    def _audio_mel(self, audio: Any, options: TranscribeOptions) -> tuple[MelSource, SpeechMap | None, float]:
        """What Whisper reads (the log-mel windows of the audio, or of its speech alone with ``vad_filter``), the
        speech map, and the audio's duration. A file is read as a stream, twice (its length and loudest frame, then
        window by window), so memory does not grow with its length; the VAD needs all the samples at once."""
        front = front_end_of(self.engine)
        if front is not None and not options.vad_filter and not isinstance(audio, np.ndarray) and not _is_tensor(audio):
            file = audio if isinstance(audio, AudioFile) else AudioFile(audio)
            if file.rereadable:
                mel = file_mel(front, file)
                check_length(mel.n_samples, audio)
                return mel, None, mel.n_samples / SAMPLE_RATE
        samples = self._samples(audio)
        duration = samples.size / SAMPLE_RATE
        speech = _speech_map(samples, options) if options.vad_filter else None
        if speech is not None:  # Whisper reads the speech joined end to end; times are mapped back below
            samples = speech.join(samples)
        if front is not None:
            return samples_mel(front, samples), speech, duration
        peak = 0.0 if samples.size == 0 else max(float(samples.max()), -float(samples.min()))
        return ArrayMel(self.engine.log_mel(samples, padding=N_SAMPLES), samples.size, peak, samples), speech, duration

    def _prepare_options(self, options: TranscribeOptions) -> TranscribeOptions:
        raw = options.decoding.language
        if isinstance(raw, str) and raw.strip().lower() == "auto":  # 'auto' means every window, None the first only
            options = replace(options, language_per_window=True)
        language = normalize_language(raw)
        if language is not None and options.language_per_window:
            options = replace(options, language_per_window=False)  # a language given is a language for every window
        if not self.is_multilingual:
            options = replace(options, language_per_window=False)
            if language not in (None, "en"):
                raise OptionError(f"{self.name or 'this model'} is English-only; it cannot transcribe {LANGUAGES[language]!r} (use a multilingual model such "
                                  "as base)")
            if options.decoding.task == "translate":
                raise OptionError(f"{self.name or 'this model'} is English-only; translate needs a multilingual model")
            language = "en"
        return replace(options, decoding=replace(options.decoding, language=language))

    def iter_transcribe(
        self, audio: Any, options: TranscribeOptions | None = None, *, on_progress: Callable[[int, int], None] | None = None, **kwargs: Any
    ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        """Information about the audio at once, and a generator of segments as they are decoded.

        ``on_progress(done_frames, total_frames)`` is called after each window.
        """
        if options is None:
            options = build_options(**kwargs)
        elif kwargs:
            raise OptionError("give either an options object or keyword options, not both")
        options = self._prepare_options(options)
        mel, speech, duration = self._audio_mel(audio, options)
        content_frames = mel.content_frames
        clips = seek_clips(options.clip_timestamps, content_frames)
        language, probs = options.decoding.language, None
        if language is None:
            language, probs = self._detect(mel.window(0, N_FRAMES))
            if not options.language_per_window:  # decode every window in the first window's language, as the reference
                options = replace(options, decoding=replace(options.decoding, language=language))
        script = options.chinese_script
        if options.chinese_prompt and chinese.applies_to(language, script) and options.initial_prompt is None:
            options = replace(options, initial_prompt=chinese.steering_prompt(script))
        tokenizer = self.tokenizer(language, options.decoding.task)
        info = TranscriptionInfo(language=language, language_probs=probs, duration=duration, chinese_script=script)
        done = [0]
        total = sum(end - start for start, end in clips)

        def progress(frames: int) -> None:
            done[0] += frames
            if on_progress:
                on_progress(done[0], total)  # the frames of the clips: what is decoded

        if mel.n_samples == 0 or mel.peak < SILENCE_PEAK:  # no samples at all counts too
            # Whisper invents words ("you") for silence; there is nothing to decode (with vad_filter: no speech found)
            return info, iter(())
        segments = iter_segments(
            self.engine, mel, content_frames, tokenizer, options, alignment_heads=self.alignment_heads, on_progress=progress
        )
        if speech is not None:
            segments = (_in_recording_time(s, speech) for s in segments)
        if script != chinese.AS_IS:
            segments = (chinese.convert_segment(s, script, language) for s in segments)
        return info, segments

    def transcribe(self, audio: Any, options: TranscribeOptions | None = None, *, on_progress=None, **kwargs: Any) -> TranscriptionResult:
        """Transcribe a path, bytes, file object or 16 kHz float array; keyword options as in the reference."""
        diarize = options.diarize if options is not None else kwargs.get("diarize")
        if not diarize:
            info, segments = self.iter_transcribe(audio, options, on_progress=on_progress, **kwargs)
            return self.assemble(info, list(segments))
        from .diarization import start_speakers

        if not isinstance(audio, np.ndarray):  # the speaker turns need the samples too: decoded once, shared
            audio = self._samples(audio)
        # who said what (issue 21): the speaker turns are found on their own thread while the samples are transcribed
        with start_speakers(audio, options if options is not None else build_options(**kwargs)) as speakers:
            info, segments = self.iter_transcribe(audio, options, on_progress=on_progress, **kwargs)
            return speakers.apply(self, self.assemble(info, list(segments)))

    def assemble(self, info: TranscriptionInfo, segments: list[Segment]) -> TranscriptionResult:
        """The whole result from the segments ``iter_transcribe`` produced."""
        text = self.tokenizer(info.language).decode([t for s in segments for t in s.tokens])
        if any(chinese.applies_to(s.language or info.language, info.chinese_script) for s in segments):
            text = "".join(s.text for s in segments)  # the segments' converted text, not the model's tokens
        return TranscriptionResult(text=text, language=info.language, segments=segments, duration=info.duration, language_probs=info.language_probs)


def _speech_map(samples: np.ndarray, options: TranscribeOptions) -> SpeechMap:
    """``vad_filter``: where the speech of ``samples`` is (no regions when the VAD finds none)."""
    from .vad import speech_map

    return speech_map(samples, options.vad_options())


def _in_recording_time(segment: Segment, speech: SpeechMap) -> Segment:
    """A segment of the joined speech with its times (and its words', and its window's start) in the recording's."""
    words = None if segment.words is None else [replace(w, **dict(zip(("start", "end"), speech.original_span(w.start, w.end)))) for w in segment.words]
    start, end = speech.original_span(segment.start, segment.end)
    seek = round(speech.original_time(segment.seek / FRAMES_PER_SECOND) * FRAMES_PER_SECOND)
    return replace(segment, seek=seek, start=start, end=end, words=words)


def is_digital_silence(samples: np.ndarray) -> bool:
    """True when no sample rises above SILENCE_PEAK: nothing a microphone picked up is that quiet."""
    return samples.size == 0 or max(float(samples.max()), -float(samples.min())) < SILENCE_PEAK  # no |x| copy


def check_length(n_samples: int, audio: Any) -> None:
    """Refuse audio with no samples, or too few to hold a word (``audio`` names it in the message)."""
    if n_samples == 0:
        raise AudioDecodeError(f"{_describe(audio)} contains no audio samples")
    if n_samples < MIN_AUDIO_SECONDS * SAMPLE_RATE:
        raise AudioDecodeError(f"{_describe(audio)} is only {n_samples / SAMPLE_RATE:.2f} s long; at least {MIN_AUDIO_SECONDS} s of audio is needed")


def _describe(audio: Any) -> str:
    if isinstance(audio, AudioFile):
        return str(audio)
    return str(audio) if isinstance(audio, (str, Path)) else "the audio"


def gpu_visible() -> bool:
    """An NVIDIA or AMD GPU driver, or an Apple GPU, is present (checked without importing torch or spawning a process)."""
    import sys

    return sys.platform == "darwin" or any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/kfd"))


def choose_backend(backend: str, device: Any, dtype: Any) -> str:
    """'onnx' or 'torch' for ``load_model``'s arguments. auto: ONNX Runtime on a CPU (the fast engine; every feature
    runs on it), PyTorch where a GPU is asked for or visible, or a half-precision dtype is."""
    if backend not in BACKENDS:
        raise OptionError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "torch" and not torch_installed():
        raise OptionError("the torch backend needs PyTorch, which the default install leaves out: pip install 'tingxie-asr[torch]'")
    if backend != "auto":
        return backend
    # a GPU without PyTorch (the default install) still runs: ONNX Runtime on the CPU
    cpu = str(device) == "cpu" or (device in (None, "auto") and not (gpu_visible() and torch_installed()))
    return "onnx" if cpu and dtype in (None, "auto", "float32") else "torch"


def torch_installed() -> bool:
    """Whether PyTorch can be imported (it is the [torch] extra), found without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False


def load_model(
    name_or_path: str | Path = "tiny.en",
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    *,
    download: bool = True,
    cache_dir: str | Path | None = None,
    compute_type: str | None = "auto",
    backend: str = "auto",
    threads: int = 0,
) -> WhisperModel:
    """Load a model by name (tiny.en, base, small, ... large-v3-turbo) or path (OpenAI .pt, Hugging Face, CTranslate2).

    The defaults run the fast engine: ONNX Runtime with int8 weights on a CPU (``backend='auto'``,
    ``compute_type='auto'``), PyTorch float16 on a GPU. ``compute_type='float32'`` is the reference-identical switch
    (float32 products; with the torch backend on a CPU, bit for bit the reference's path). ``backend``: 'onnx'
    (ONNX Runtime on the CPU, torch never imported: graphs exported once into the cache), 'torch' (any device,
    fine-tuning), or 'auto'. ``threads``: ONNX Runtime's threads (0: one per core); the torch backend uses
    ``torch.set_num_threads``. Every transcription option runs on both engines.
    """
    backend = choose_backend(backend, device, dtype)
    if compute_type is not None and str(compute_type).strip().lower() not in COMPUTE_TYPES:
        raise OptionError(f"compute_type must be one of {', '.join(COMPUTE_TYPES)}, not {compute_type!r}")
    compute = (compute_type or "default").strip().lower()
    if backend == "onnx":
        from .ort.runtime import load_ort_model

        if device not in (None, "auto", "cpu") or dtype not in (None, "auto", "float32"):
            raise OptionError(f"the onnx backend runs float32 or int8 on the CPU, not device={device!r} dtype={dtype!r}; use backend='torch'")
        engine = load_ort_model(name_or_path, "int8" if compute in ("int8", "auto") else "default", cache_dir=cache_dir, download=download, threads=threads)
        return WhisperModel(engine, name=str(name_or_path), alignment_heads=engine.alignment_heads or None, source=engine.source)
    from .model import build_model
    from .quantize import quantize_int8, resolve_compute_type
    from .torch_engine import TorchEngine
    from .weights import load_checkpoint

    dev = resolve_device(device)
    torch_dtype = resolve_dtype("float32" if compute == "float32" else dtype, dev)
    compute = resolve_compute_type("default" if compute == "float32" else compute, dev, torch_dtype)
    checkpoint = load_checkpoint(name_or_path, cache_dir=cache_dir, download=download, convert_to=torch_dtype)
    module = build_model(checkpoint, device=dev, dtype=torch_dtype)
    if compute == "int8":
        quantize_int8(module)
    return WhisperModel(TorchEngine(module, compute), name=str(name_or_path), alignment_heads=checkpoint.alignment_heads, source=checkpoint.source)
