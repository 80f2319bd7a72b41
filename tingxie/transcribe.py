"""Long-form transcription: slide a 30-s window over the log-mel, seeking by the last timestamp.

``iter_segments`` is a generator of finished segments; each window goes through named steps: its features, the
prompt from the text before it, decode with fallback, then ``window_step.finish_window`` (silence, split at
timestamps, early end, word timings, hallucination skip), and its text becomes the next window's prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, N_SAMPLES, pad_or_trim
from .decoding.fallback import decode_with_fallback
from .decoding.filters import LogitFilter
from .decoding.nonspeech import speech_seconds
from .engine import Engine, window_features
from .mel_source import ArrayMel, MelSource
from .options import TranscribeOptions
from .results import Segment
from .tokenizer import Tokenizer, get_tokenizer
from .window_step import _to_segment, early_end_frames, finish_window


@dataclass
class _State:
    """What carries over from one window to the next."""

    seek: int
    all_tokens: list[int] = field(default_factory=list)
    initial_prompt_tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    last_speech_timestamp: float = 0.0
    next_id: int = 0


def content_mel(engine: Engine, samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Log-mel of the whole audio padded with 30 s of silence, and the number of frames of real audio."""
    mel = engine.log_mel(samples, padding=N_SAMPLES)
    return mel, mel.shape[-1] - N_FRAMES


def seek_clips(clip_timestamps: tuple[float, ...], content_frames: int) -> list[tuple[int, int]]:
    """The clips as (start, end) mel frames, inside the audio (a clip ending past it would never be finished)."""
    points = [min(round(t * FRAMES_PER_SECOND), content_frames) for t in clip_timestamps] or [0]
    if len(points) % 2 == 1:
        points.append(content_frames)
    return list(zip(points[::2], points[1::2]))


def window_prompt(state: _State, options: TranscribeOptions, n_text_ctx: int) -> list[int]:
    if options.carry_initial_prompt:
        remaining = n_text_ctx // 2 - 1 - len(state.initial_prompt_tokens)
        ignored = max(len(state.initial_prompt_tokens), state.prompt_reset_since)
        return state.initial_prompt_tokens + state.all_tokens[ignored:][-remaining:]
    return state.all_tokens[state.prompt_reset_since :]


def _window_speech(source: MelSource, seek: int, n_frames: int) -> float | None:
    """Seconds of VAD speech in the audio of mel frames [seek, seek + n_frames), where the source holds that audio or
    can read it again (None otherwise)."""
    audio = source.samples(seek * HOP_LENGTH, (seek + n_frames) * HOP_LENGTH)
    return None if audio is None else speech_seconds(audio)


def _tokenizer_for(engine: Engine, tokenizer: Tokenizer, language: str | None) -> Tokenizer:
    return get_tokenizer(engine.is_multilingual, num_languages=engine.num_languages, language=language, task=tokenizer.task)


def iter_segments(
    engine: Engine,
    mel: MelSource | np.ndarray,
    content_frames: int,
    tokenizer: Tokenizer,
    options: TranscribeOptions,
    *,
    alignment_heads: list[tuple[int, int]] | None = None,
    extra_filters: list[LogitFilter] | None = None,
    on_progress: Callable[[int], None] | None = None,
    generator: np.random.Generator | None = None,
) -> Iterator[Segment]:
    """Finished segments in order, as each window is decoded, from the log-mel ``mel`` (whole, or read a window at a
    time: the seek only moves forward). ``on_progress`` gets mel frames done."""
    source = ArrayMel(mel) if isinstance(mel, np.ndarray) else mel
    clips = seek_clips(options.clip_timestamps, content_frames)
    state = _State(seek=clips[0][0])
    if options.initial_prompt:
        state.initial_prompt_tokens = tokenizer.encode(" " + options.initial_prompt.strip())
        state.all_tokens.extend(state.initial_prompt_tokens)
    language = options.decoding.language
    min_left = early_end_frames(options, not language)  # undecoded frames from which an early end resumes
    clip_idx = 0
    while clip_idx < len(clips):
        clip_start, clip_end = clips[clip_idx]
        state.seek = max(state.seek, clip_start)
        if state.seek >= clip_end:
            clip_idx += 1
            if clip_idx < len(clips):
                state.seek = clips[clip_idx][0]
            continue
        seek = state.seek
        segment_size = min(N_FRAMES, content_frames - seek, clip_end - seek)
        features = window_features(engine, pad_or_trim(source.window(seek, segment_size), N_FRAMES))
        prompt = window_prompt(state, options, engine.dims.n_text_ctx)
        result = decode_with_fallback(engine, features, tokenizer, options, prompt, extra_filters=extra_filters, generator=generator)
        # without a language, each window was decoded in the language detected for it (code-switched audio)
        window_tokenizer = tokenizer if language else _tokenizer_for(engine, tokenizer, result.language)
        outcome = finish_window(engine, result, window_tokenizer, options, seek=seek, segment_size=segment_size, content_frames=content_frames,
                                alignment_heads=alignment_heads, last_speech_timestamp=state.last_speech_timestamp,
                                early_end_min_left=min_left, window_speech=lambda: _window_speech(source, seek, segment_size))
        state.seek, state.last_speech_timestamp = outcome.next_seek, outcome.last_speech_timestamp
        if outcome.restart:
            continue
        for seg in outcome.segments:
            seg["id"] = state.next_id
            state.next_id += 1
            state.all_tokens.extend(seg["tokens"])
            yield _to_segment(seg, None if language else result.language)  # a segment names its language when detected per window
        if not outcome.silent and (not options.condition_on_previous_text or result.temperature > 0.5):
            state.prompt_reset_since = len(state.all_tokens)
        if on_progress:
            on_progress(min(content_frames, state.seek) - seek)
