"""The Python API: ``load_model(name_or_path)`` and ``WhisperModel.transcribe(audio, **options)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import chinese
from .audio import N_FRAMES, SAMPLE_RATE, decode_audio, pad_or_trim
from .decoding import detect_language as _detect_language
from .decoding.decoder import audio_features_of
from .errors import AudioDecodeError, OptionError
from .model import Whisper, build_model
from .options import TranscribeOptions, build_options
from .results import Segment, TranscriptionResult
from .tokenizer import LANGUAGES, Tokenizer, get_tokenizer, normalize_language
from .transcribe import content_mel, iter_segments
from .weights import load_checkpoint

# Shorter than this cannot hold a word; Whisper would only invent text for it.
MIN_AUDIO_SECONDS = 0.25
# Peak amplitude below -70 dBFS: digital silence or a muted input, never speech.
SILENCE_PEAK = 10 ** (-70 / 20)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype in (None, "auto"):
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise OptionError(f"dtype must be one of {', '.join(_DTYPES)} or auto, not {dtype!r}")
    return _DTYPES[dtype]


def default_alignment_heads(model: Whisper) -> list[tuple[int, int]]:
    """Without known heads, use every head of the upper half of the decoder, as the reference does."""
    dims = model.dims
    return [(layer, head) for layer in range(dims.n_text_layer // 2, dims.n_text_layer) for head in range(dims.n_text_head)]


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str
    language_probs: dict[str, float] | None
    duration: float
    chinese_script: str = "as-is"


class WhisperModel:
    """A loaded Whisper model with its tokenizers and alignment heads."""

    def __init__(self, module: Whisper, *, name: str = "", alignment_heads: list[tuple[int, int]] | None = None, source: Path | None = None):
        self.module = module
        self.name = name
        self.source = source
        self.alignment_heads = alignment_heads or default_alignment_heads(module)

    @property
    def dims(self):
        return self.module.dims

    @property
    def is_multilingual(self) -> bool:
        return self.module.is_multilingual

    @property
    def device(self) -> torch.device:
        return self.module.device

    @property
    def dtype(self) -> torch.dtype:
        return self.module.dtype

    def tokenizer(self, language: str | None = None, task: str = "transcribe") -> Tokenizer:
        return get_tokenizer(self.is_multilingual, num_languages=self.module.num_languages, language=language, task=task)

    def detect_language(self, audio: Any) -> tuple[str, dict[str, float]]:
        """The most likely language of the first 30 s and the probability of every language."""
        mel, _ = content_mel(self._samples(audio), self.dims.n_mels)
        return self._detect(mel)

    def _detect(self, mel: torch.Tensor) -> tuple[str, dict[str, float]]:
        features = audio_features_of(self.module, pad_or_trim(mel, N_FRAMES)[None])
        _, probs = _detect_language(self.module, features, self.tokenizer())
        return max(probs[0], key=probs[0].get), probs[0]

    def _samples(self, audio: Any) -> np.ndarray:
        samples = audio if isinstance(audio, np.ndarray) else decode_audio(audio)
        if samples.size == 0:
            raise AudioDecodeError(f"{_describe(audio)} contains no audio samples")
        if samples.size < MIN_AUDIO_SECONDS * SAMPLE_RATE:
            raise AudioDecodeError(
                f"{_describe(audio)} is only {samples.size / SAMPLE_RATE:.2f} s long; at least {MIN_AUDIO_SECONDS} s of audio is needed"
            )
        return samples

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
                raise OptionError(f"{self.name or 'this model'} is English-only; it cannot transcribe {LANGUAGES[language]!r} (use a multilingual model such as base)")
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
        samples = self._samples(audio)
        mel, content_frames = content_mel(samples, self.dims.n_mels)
        language, probs = options.decoding.language, None
        if language is None:
            language, probs = self._detect(mel)
            if not options.language_per_window:  # decode every window in the first window's language, as the reference
                options = replace(options, decoding=replace(options.decoding, language=language))
        script = options.chinese_script
        if options.chinese_prompt and chinese.applies_to(language, script) and options.initial_prompt is None:
            options = replace(options, initial_prompt=chinese.steering_prompt(script))
        tokenizer = self.tokenizer(language, options.decoding.task)
        info = TranscriptionInfo(language=language, language_probs=probs, duration=samples.size / SAMPLE_RATE, chinese_script=script)
        done = [0]

        def progress(frames: int) -> None:
            done[0] += frames
            if on_progress:
                on_progress(done[0], content_frames)

        if is_digital_silence(samples):
            # Whisper invents words ("you") for silence; there is nothing to decode
            return info, iter(())
        segments = iter_segments(
            self.module, mel, content_frames, tokenizer, options, alignment_heads=self.alignment_heads, on_progress=progress
        )
        if script != chinese.AS_IS:
            segments = (chinese.convert_segment(s, script, language) for s in segments)
        return info, segments

    def transcribe(self, audio: Any, options: TranscribeOptions | None = None, *, on_progress=None, **kwargs: Any) -> TranscriptionResult:
        """Transcribe a path, bytes, file object or 16 kHz float array; keyword options as in the reference."""
        info, segments = self.iter_transcribe(audio, options, on_progress=on_progress, **kwargs)
        return self.assemble(info, list(segments))

    def assemble(self, info: TranscriptionInfo, segments: list[Segment]) -> TranscriptionResult:
        """The whole result from the segments ``iter_transcribe`` produced."""
        text = self.tokenizer(info.language).decode([t for s in segments for t in s.tokens])
        if any(chinese.applies_to(s.language or info.language, info.chinese_script) for s in segments):
            text = "".join(s.text for s in segments)  # the segments' converted text, not the model's tokens
        return TranscriptionResult(text=text, language=info.language, segments=segments, duration=info.duration, language_probs=info.language_probs)


def is_digital_silence(samples: np.ndarray) -> bool:
    """True when no sample rises above SILENCE_PEAK: nothing a microphone picked up is that quiet."""
    return samples.size == 0 or max(float(samples.max()), -float(samples.min())) < SILENCE_PEAK  # no |x| copy


def _describe(audio: Any) -> str:
    return str(audio) if isinstance(audio, (str, Path)) else "the audio"


def load_model(
    name_or_path: str | Path = "tiny.en",
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = None,
    *,
    download: bool = True,
    cache_dir: str | Path | None = None,
    compute_type: str | None = None,
) -> WhisperModel:
    """Load a model by name (tiny.en, base, small, ... large-v3-turbo) or path (OpenAI .pt, Hugging Face, CTranslate2).

    ``compute_type``: None or 'default' computes in ``dtype``; 'int8' runs the linear layers with int8
    weights on the CPU (faster, not bit-identical); 'auto' is int8 on a CPU, default elsewhere.
    """
    from .quantize import quantize_int8, resolve_compute_type

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    compute = resolve_compute_type(compute_type, dev, torch_dtype)
    checkpoint = load_checkpoint(name_or_path, cache_dir=cache_dir, download=download, convert_to=torch_dtype)
    module = build_model(checkpoint, device=dev, dtype=torch_dtype)
    if compute == "int8":
        quantize_int8(module)
    return WhisperModel(module, name=str(name_or_path), alignment_heads=checkpoint.alignment_heads, source=checkpoint.source)
