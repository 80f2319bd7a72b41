"""Batched long-form transcription: split on voice activity, pack speech into <= 30-s chunks, decode them together.

Sequential transcription decodes one 30-s window at a time, each conditioned on the text before it.
Here the Silero VAD (:mod:`tingxie.vad`) finds the speech, consecutive speech regions are packed into
chunks of at most 30 s (a chunk is one contiguous stretch of the audio, so the decoder's timestamps
stay valid), and ``batch_size`` chunks at a time go through the encoder and the decoder as one batch.
Chunks are decoded without the previous text as prompt (they are decoded together); a chunk whose
decode fails the usual thresholds (compression ratio, log-probability) is decoded again on its own
with the temperature fallback. Long silences are never decoded at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, SAMPLE_RATE, pad_or_trim
from .decoding.fallback import decode_with_fallback, needs_fallback, window_decoder
from .errors import OptionError
from .options import TranscribeOptions, build_options
from .results import Segment, TranscriptionResult
from .transcribe import _to_segment, early_end_frames, is_silence, resume_after_early_end, split_at_timestamps

if TYPE_CHECKING:
    from .api import TranscriptionInfo, WhisperModel
    from .vad import VadOptions

CHUNK_SECONDS = 30.0
# speech regions are cut below the window length so that padding never pushes a chunk past 30 s
MAX_REGION_SECONDS = CHUNK_SECONDS - 0.5


@dataclass(frozen=True)
class Chunk:
    """One contiguous stretch of audio (samples ``start`` to ``end``) holding one or more speech regions."""

    start: int
    end: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def pack_regions(regions: list[tuple[int, int]], max_samples: int = int(CHUNK_SECONDS * SAMPLE_RATE)) -> list[Chunk]:
    """Greedily join consecutive speech regions while the stretch from the first start to the last end fits."""
    chunks: list[Chunk] = []
    for start, end in regions:
        if end - start > max_samples:  # the VAD splits long speech; this only guards against a caller's regions
            for s in range(start, end, max_samples):
                chunks.append(Chunk(s, min(end, s + max_samples)))
            continue
        if chunks and end - chunks[-1].start <= max_samples:
            chunks[-1] = Chunk(chunks[-1].start, end)
        else:
            chunks.append(Chunk(start, end))
    return chunks


def speech_chunks(samples: np.ndarray, vad_options: VadOptions | None = None) -> list[Chunk]:
    """The <= 30-s chunks of speech of 16 kHz mono ``samples``."""
    from .vad import VadOptions, speech_timestamps

    opts = vad_options or VadOptions(min_silence_ms=160, speech_pad_ms=200)
    if opts.max_speech_s > MAX_REGION_SECONDS:
        opts = replace(opts, max_speech_s=MAX_REGION_SECONDS)
    return pack_regions(speech_timestamps(samples, opts))


def _chunk_features(module: Any, samples: np.ndarray, chunks: list[Chunk]) -> Any:
    """The encoder's output for each chunk's padded log-mel, as one batch, in the model's runtime."""
    if getattr(module, "runtime", "torch") == "onnxruntime":
        from .audio import log_mel_spectrogram_numpy

        # the windows are encoded one at a time and the decoder then runs the whole batch, without the encoder's
        # buffers kept beside it (``keep_buffers=False``). The log-mels come first: OpenBLAS's workers spin on after
        # its products and took a core from an encoder window run right after them (~190-230 instead of ~145 ms)
        mels = np.stack([pad_or_trim(log_mel_spectrogram_numpy(samples[c.start : c.end], module.dims.n_mels), N_FRAMES) for c in chunks])
        return module.embed_audio(mels, keep_buffers=False)
    import torch

    from .audio import log_mel_spectrogram

    mels = torch.stack([pad_or_trim(log_mel_spectrogram(samples[c.start : c.end], module.dims.n_mels), N_FRAMES) for c in chunks])
    step = len(chunks) if module.device.type != "cpu" else 1  # on a CPU one window at a time bounds the attention memory
    return torch.cat([module.embed_audio(mels[i : i + step]) for i in range(0, len(chunks), step)])


def _inference_mode(module: Any) -> contextlib.AbstractContextManager:
    if getattr(module, "runtime", "torch") == "onnxruntime":
        return contextlib.nullcontext()
    import torch

    return torch.inference_mode()


def _as_batch(features: Any) -> Any:
    """One window's features as a batch of one (a torch tensor gains an axis; ONNX features are one already)."""
    return features[None] if hasattr(features, "dim") else features


def iter_batched_segments(
    model: WhisperModel,
    samples: np.ndarray,
    chunks: list[Chunk],
    language: str,
    options: TranscribeOptions,
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Segment]:
    """Segments of every chunk in time order, ``batch_size`` chunks per encoder and decoder batch."""
    module = model.module
    tokenizer = model.tokenizer(language, options.decoding.task)
    input_stride = N_FRAMES // module.dims.n_audio_ctx
    time_precision = input_stride * HOP_LENGTH / SAMPLE_RATE
    window = replace(options.window_decoding(options.temperature[0]), language=language, prompt=None)
    prompt = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else None
    if prompt:
        window = replace(window, prompt=tuple(prompt))
    decode = window_decoder(module)
    min_left = early_end_frames(options, False)  # undecoded frames of a chunk from which an early end resumes
    pending, found = list(chunks), []
    while pending:
        batch, pending = pending[:batch_size], pending[batch_size:]
        with _inference_mode(module):
            results = decode(module, _chunk_features(module, samples, batch), tokenizer, window)
        for chunk, result in zip(batch, results):
            feats = _as_batch(result.audio_features)
            if len(options.temperature) > 1 and needs_fallback(result, options):
                # the batch was the first temperature's decode: the fallback goes on from the second, as sequential
                # decoding does (decoding at the first again, alone, repeated that decision up to the int8 rounding of
                # a batch: a whole window's decode more for every chunk that fell back)
                result = decode_with_fallback(module, feats, tokenizer, replace(options, temperature=options.temperature[1:]), prompt)
            frames = min(N_FRAMES, round(chunk.seconds * FRAMES_PER_SECOND))
            seek = round(chunk.start / HOP_LENGTH)
            if is_silence(result, options):
                if on_progress:
                    on_progress(frames)
                continue
            segments, new_seek, single_ending = split_at_timestamps(result, tokenizer, seek, frames, time_precision, input_stride)
            if single_ending and min_left is not None:  # the chunk's speech after an early end is decoded again, below
                new_seek = resume_after_early_end(result.tokens, tokenizer.timestamp_begin, seek, frames, input_stride, new_seek, min_left)
            rest = chunk.end - new_seek * HOP_LENGTH
            if seek < new_seek and rest > SAMPLE_RATE:  # the decode stopped early: the rest of the chunk is decoded again
                pending.append(Chunk(new_seek * HOP_LENGTH, chunk.end))
            if on_progress:
                on_progress(frames - max(0, round(rest / HOP_LENGTH)) if rest > SAMPLE_RATE else frames)
            if options.word_timestamps and model.alignment_heads:
                from .timing import add_word_timestamps

                add_word_timestamps(
                    segments=segments, model=module, tokenizer=tokenizer, audio_features=feats, num_frames=frames,
                    alignment_heads=model.alignment_heads, prepend_punctuations=options.prepend_punctuations,
                    append_punctuations=options.append_punctuations, last_speech_timestamp=0.0,
                )
            end = chunk.end / SAMPLE_RATE
            for seg in segments:  # a timestamp past the chunk's audio is the decoder's guess: keep times inside the chunk
                seg["start"], seg["end"] = min(seg["start"], end), min(seg["end"], end)
            found.extend(s for s in segments if s["start"] != s["end"] and s["text"].strip())
    for i, seg in enumerate(sorted(found, key=lambda s: s["start"])):
        seg["id"] = i
        yield _to_segment(seg, None)


def transcribe_batched(
    model: WhisperModel,
    audio: Any,
    options: TranscribeOptions | None = None,
    *,
    batch_size: int = 8,
    vad_options: VadOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> TranscriptionResult:
    """Transcribe ``audio`` by VAD chunks decoded ``batch_size`` at a time (see the module docstring)."""
    info, segments = iter_transcribe_batched(model, audio, options, batch_size=batch_size, vad_options=vad_options, on_progress=on_progress, **kwargs)
    return model.assemble(info, list(segments))


def iter_transcribe_batched(
    model: WhisperModel,
    audio: Any,
    options: TranscribeOptions | None = None,
    *,
    batch_size: int = 8,
    vad_options: VadOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> tuple[TranscriptionInfo, Iterator[Segment]]:
    """Like ``WhisperModel.iter_transcribe``, batched; ``on_progress(done_frames, total_frames)`` per chunk."""
    from .api import TranscriptionInfo, is_digital_silence
    from .transcribe import content_mel

    if batch_size < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    if options is None:
        options = build_options(**kwargs)
    elif kwargs:
        raise OptionError("give either an options object or keyword options, not both")
    if options.clip_timestamps not in ((), (0.0,)) or options.hallucination_silence_threshold is not None:
        raise OptionError("batched transcription takes no clip_timestamps or hallucination_silence_threshold (it decodes the VAD's speech chunks)")
    options = model._prepare_options(options)
    samples = model._samples(audio)
    language, probs = options.decoding.language, None
    if language is None:
        language, probs = model._detect(content_mel(samples[: N_FRAMES * HOP_LENGTH], model.dims.n_mels, model.runtime)[0])
    info = TranscriptionInfo(language=language, language_probs=probs, duration=samples.size / SAMPLE_RATE)
    if is_digital_silence(samples):
        return info, iter(())
    chunks = speech_chunks(samples, vad_options)
    total = sum(min(N_FRAMES, round(c.seconds * FRAMES_PER_SECOND)) for c in chunks)
    done = [0]

    def progress(frames: int) -> None:
        done[0] += frames
        if on_progress:
            on_progress(done[0], total)

    return info, iter_batched_segments(model, samples, chunks, language, options, batch_size, progress)
