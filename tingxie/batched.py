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

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, SAMPLE_RATE, pad_or_trim
from .decoding.decoder import decode
from .decoding.fallback import FirstPass, decode_with_fallback, first_pass_filters, pass_window, term_evidence
from .decoding.nonspeech import heard_seconds, speech_seconds
from .engine import Engine, Features
from .errors import OptionError
from .options import TranscribeOptions, build_options
from .results import Segment, TranscriptionResult
from .window_step import _to_segment, early_end_frames, finish_window

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
    return _speech(samples, vad_options)[0]


def _speech(samples: np.ndarray, vad_options: VadOptions | None) -> tuple[list[Chunk], np.ndarray]:
    """The chunks of speech, and the VAD's probabilities they come from (per 32-ms frame of the recording)."""
    from .vad import VadOptions, regions_from_probabilities, speech_probabilities

    opts = vad_options or VadOptions(min_silence_ms=160, speech_pad_ms=200)
    if opts.max_speech_s > MAX_REGION_SECONDS:
        opts = replace(opts, max_speech_s=MAX_REGION_SECONDS)
    probs = speech_probabilities(samples)
    return pack_regions(regions_from_probabilities(probs, samples.size, opts)), probs


def _chunk_speech(samples: np.ndarray, chunk: Chunk, probs: np.ndarray | None) -> float:
    """Seconds of VAD speech in a chunk: from the recording's run where given (the VAD's state then knows the audio
    before the chunk: laughter cut out alone scores 0.42 s, within its recording 0.22 s), else the chunk's own."""
    from .vad import WINDOW

    if probs is None:
        return speech_seconds(samples[chunk.start : chunk.end])
    return heard_seconds(probs[chunk.start // WINDOW : -(-chunk.end // WINDOW)])


def _chunk_features(engine: Engine, samples: np.ndarray, chunks: list[Chunk]) -> Features:
    """The features of each chunk's padded log-mel, as one batch."""
    # the log-mels come first, then the windows are encoded without the encoder's buffers kept beside the batch's
    # decoding (OpenBLAS's workers spin on after its products and took a core from an encoder window run among them)
    mels = np.stack([pad_or_trim(engine.log_mel(samples[c.start : c.end]), N_FRAMES) for c in chunks])
    return engine.encode(mels, keep_buffers=False)


def iter_batched_segments(
    model: WhisperModel,
    samples: np.ndarray,
    chunks: list[Chunk],
    language: str,
    options: TranscribeOptions,
    batch_size: int,
    on_progress: Callable[[int], None] | None = None,
    speech_probs: np.ndarray | None = None,
) -> Iterator[Segment]:
    """Segments of every chunk in time order, ``batch_size`` chunks per encoder and decoder batch. ``speech_probs``:
    the VAD's probabilities over the recording that the chunks came from (for the non-speech check)."""
    engine = model.engine
    tokenizer = model.tokenizer(language, options.decoding.task)
    window = replace(pass_window(options, options.temperature[0]), language=language, prompt=None)
    prompt = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else None
    if prompt:
        window = replace(window, prompt=tuple(prompt))
    min_left = early_end_frames(options, False)  # undecoded frames of a chunk from which an early end resumes
    content_frames = round(samples.size / HOP_LENGTH)
    pending, found = list(chunks), []
    last_speech: dict[int, float] = {}  # chunk end sample -> its last word's end: the next chunk's word timing starts there
    while pending:
        batch, pending = pending[:batch_size], pending[batch_size:]
        evidence = term_evidence(tokenizer, options)
        filters = first_pass_filters(tokenizer, options, window, evidence)
        results = decode(engine, _chunk_features(engine, samples, batch), tokenizer, window, extra_filters=filters)
        # each window's term margins read now, along its own rows: a window's decodes below record over the batch's
        group = window.beam_size or window.best_of or 1
        firsts = [FirstPass(r, evidence.on_path(r.tokens, slice(k * group, (k + 1) * group)) if evidence is not None else None)
                  for k, r in enumerate(results)]
        for chunk, first in zip(batch, firsts):
            # the batch was the first temperature's decode: each window goes on from there as a sequential one does
            # (the boosted or LM-fused decode made again where it loops, the fallback, a glossary's second pass)
            result = decode_with_fallback(engine, first.result.audio_features, tokenizer, options, prompt, first=first)
            frames = min(N_FRAMES, round(chunk.seconds * FRAMES_PER_SECOND))
            seek = round(chunk.start / HOP_LENGTH)
            before = max((end for at, end in last_speech.items() if at <= chunk.start), default=0.0)
            outcome = finish_window(engine, result, tokenizer, options, seek=seek, segment_size=frames, content_frames=content_frames,
                                    alignment_heads=model.alignment_heads, last_speech_timestamp=before, early_end_min_left=min_left,
                                    window_speech=lambda: _chunk_speech(samples, chunk, speech_probs))
            last_speech[chunk.end] = outcome.last_speech_timestamp
            rest = chunk.end - outcome.next_seek * HOP_LENGTH
            # the decode stopped early or skipped a hallucination: the rest of the chunk is decoded again
            if not outcome.silent and seek < outcome.next_seek and rest > SAMPLE_RATE:
                pending.append(Chunk(outcome.next_seek * HOP_LENGTH, chunk.end))
            if on_progress:
                on_progress(frames - max(0, round(rest / HOP_LENGTH)) if rest > SAMPLE_RATE and not outcome.silent else frames)
            end = chunk.end / SAMPLE_RATE
            for seg in outcome.segments:  # a timestamp past the chunk's audio is the decoder's guess: keep times inside the chunk
                seg["start"], seg["end"] = min(seg["start"], end), min(seg["end"], end)
            found.extend(outcome.segments)
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
    if options.clip_timestamps not in ((), (0.0,)):
        raise OptionError("batched transcription takes no clip_timestamps (it decodes the VAD's speech chunks)")
    options = model._prepare_options(options)
    samples = model._samples(audio)
    language, probs = options.decoding.language, None
    if language is None:
        language, probs = model._detect(content_mel(model.engine, samples[: N_FRAMES * HOP_LENGTH])[0])
    info = TranscriptionInfo(language=language, language_probs=probs, duration=samples.size / SAMPLE_RATE)
    if is_digital_silence(samples):
        return info, iter(())
    chunks, probs = _speech(samples, vad_options)
    total = sum(min(N_FRAMES, round(c.seconds * FRAMES_PER_SECOND)) for c in chunks)
    done = [0]

    def progress(frames: int) -> None:
        done[0] += frames
        if on_progress:
            on_progress(done[0], total)

    return info, iter_batched_segments(model, samples, chunks, language, options, batch_size, progress, probs)
