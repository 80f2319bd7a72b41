"""Long-form transcription: slide a 30-s window over the log-mel, seeking by the last timestamp.

``iter_segments`` is a generator of finished segments; each window goes through named steps:
decode with fallback, skip silence, split at timestamps, add word timings, guard against
hallucinations in silence, then hand the text on as the next window's prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, pad_or_trim
from .decoding.fallback import decode_with_fallback
from .decoding.filters import LogitFilter
from .decoding.window import DecodingResult
from .options import TranscribeOptions
from .results import Segment, Word
from .tokenizer import Tokenizer, get_tokenizer

if TYPE_CHECKING:  # the loop runs a PyTorch model or an ONNX Runtime one (tingxie.ort); neither is imported here
    import torch
    from torch import Tensor

    from .model import Whisper

PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"


@dataclass
class _State:
    """What carries over from one window to the next."""

    seek: int
    all_tokens: list[int] = field(default_factory=list)
    initial_prompt_tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    last_speech_timestamp: float = 0.0
    next_id: int = 0


def content_mel(audio, n_mels: int, runtime: str = "torch") -> tuple[Any, int]:
    """Log-mel of the whole audio padded with 30 s of silence, and the number of frames of real audio.

    A tensor for the PyTorch runtime, a NumPy array for ONNX Runtime."""
    if runtime == "onnxruntime":
        from .audio import log_mel_spectrogram_numpy

        mel = log_mel_spectrogram_numpy(audio, n_mels, padding=N_SAMPLES)
    else:
        from .audio import log_mel_spectrogram

        mel = log_mel_spectrogram(audio, n_mels, padding=N_SAMPLES)
    return mel, mel.shape[-1] - N_FRAMES


def window_features(model: Any, mel_window: Any) -> Any:
    """The encoder's output for one padded mel window, in the model's runtime."""
    if getattr(model, "runtime", "torch") == "onnxruntime":
        return model.embed_audio(mel_window[None])
    from .decoding.decoder import audio_features_of

    return audio_features_of(model, mel_window[None])


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


def is_silence(result: DecodingResult, options: TranscribeOptions) -> bool:
    """<|nospeech|> likely and the text itself unlikely: nothing was said in this window."""
    if options.no_speech_threshold is None:
        return False
    silent = result.no_speech_prob > options.no_speech_threshold
    if options.logprob_threshold is not None and result.avg_logprob > options.logprob_threshold:
        silent = False
    return silent


def split_at_timestamps(
    result: DecodingResult, tokenizer: Tokenizer, seek: int, segment_size: int, time_precision: float, input_stride: int
) -> tuple[list[dict], int, bool]:
    """Cut the window's tokens into segments at consecutive timestamp pairs; returns (segments, new seek, ended on a single timestamp)."""
    tokens = result.tokens
    ts = tokenizer.timestamp_begin
    is_ts = [t >= ts for t in tokens]
    single_timestamp_ending = is_ts[-2:] == [False, True]
    time_offset = seek * HOP_LENGTH / SAMPLE_RATE

    def segment(start: float, end: float, toks: list[int]) -> dict:
        return {
            "seek": seek, "start": start, "end": end,
            "text": tokenizer.decode([t for t in toks if t < tokenizer.eot]),
            "tokens": toks, "temperature": result.temperature, "avg_logprob": result.avg_logprob,
            "compression_ratio": result.compression_ratio, "no_speech_prob": result.no_speech_prob,
        }

    consecutive = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    segments = []
    if consecutive:
        slices = consecutive + ([len(tokens)] if single_timestamp_ending else [])
        last = 0
        for current in slices:
            piece = tokens[last:current]
            segments.append(segment(time_offset + (piece[0] - ts) * time_precision, time_offset + (piece[-1] - ts) * time_precision, piece))
            last = current
        if single_timestamp_ending:
            seek += segment_size
        else:
            seek += (tokens[last - 1] - ts) * input_stride
    else:
        duration = segment_size * HOP_LENGTH / SAMPLE_RATE
        stamps = [t for t in tokens if t >= ts]
        if stamps and stamps[-1] != ts:
            duration = (stamps[-1] - ts) * time_precision
        segments.append(segment(time_offset, time_offset + duration, tokens))
        seek += segment_size
    return segments, seek, single_timestamp_ending


def _word_anomaly_score(word: dict) -> float:
    probability, duration = word.get("probability", 0.0), word["end"] - word["start"]
    score = 1.0 if probability < 0.15 else 0.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def is_segment_anomaly(segment: dict | None) -> bool:
    """Words too short, too long or too unlikely: the signature of text invented over silence."""
    if segment is None or not segment.get("words"):
        return False
    words = [w for w in segment["words"] if w["word"] not in PUNCTUATION][:8]
    score = sum(_word_anomaly_score(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def _next_words_segment(segments: list[dict]) -> dict | None:
    return next((s for s in segments if s.get("words")), None)


def _last_word_end(segments: list[dict]) -> float | None:
    return next((w["end"] for s in reversed(segments) for w in reversed(s.get("words") or [])), None)


def skip_hallucinations(
    segments: list[dict], state: _State, threshold: float, previous_seek: int, segment_size: int,
    time_offset: float, window_end: float, content_duration: float, content_frames: int, single_timestamp_ending: bool, seek: int,
) -> tuple[int, bool]:
    """Drop anomalous segments surrounded by silence; returns (seek, restart the window)."""
    if not single_timestamp_ending:
        last_end = _last_word_end(segments)
        if last_end is not None and last_end > time_offset:
            seek = round(last_end * FRAMES_PER_SECOND) if window_end - last_end > threshold else previous_seek + segment_size
    first = _next_words_segment(segments)
    if first is not None and is_segment_anomaly(first):
        gap = first["start"] - time_offset
        if gap > threshold:
            return previous_seek + round(gap * FRAMES_PER_SECOND), True
    hal_last_end = state.last_speech_timestamp
    for si, seg in enumerate(segments):
        if not seg.get("words"):
            continue
        if is_segment_anomaly(seg):
            nxt = _next_words_segment(segments[si + 1 :])
            hal_next_start = nxt["words"][0]["start"] if nxt is not None else time_offset + segment_size * HOP_LENGTH / SAMPLE_RATE
            silence_before = seg["start"] - hal_last_end > threshold or seg["start"] < threshold or seg["start"] - time_offset < 2.0
            silence_after = hal_next_start - seg["end"] > threshold or is_segment_anomaly(nxt) or window_end - seg["end"] < 2.0
            if silence_before and silence_after:
                seek = round(max(time_offset + 1, seg["start"]) * FRAMES_PER_SECOND)
                if content_duration - seg["end"] < threshold:
                    seek = content_frames
                del segments[si:]
                break
        hal_last_end = seg["end"]
    return seek, False


def _to_segment(d: dict, language: str | None) -> Segment:
    words = d.get("words")
    return Segment(
        id=d["id"], seek=d["seek"], start=d["start"], end=d["end"], text=d["text"], tokens=d["tokens"],
        temperature=d["temperature"], avg_logprob=d["avg_logprob"], compression_ratio=d["compression_ratio"],
        no_speech_prob=d["no_speech_prob"], words=None if words is None else [Word(**w) for w in words], language=language,
    )


def resume_after_early_end(tokens: list[int], timestamp_begin: int, seek: int, segment_size: int, input_stride: int, new_seek: int,
                           min_left: int) -> int:
    """Where the next window starts after a decode that ended on a lone timestamp: the reference skips the rest of the
    window, which loses any speech there when the model stopped early (tiny models do, int8 ones more often); with at
    least ``min_left`` mel frames of the window after that timestamp, the next window starts at it instead."""
    last = (tokens[-1] - timestamp_begin) * input_stride if tokens and tokens[-1] >= timestamp_begin else 0
    if 0 < last <= segment_size - min_left:
        return seek + last
    return new_seek


def early_end_frames(options: TranscribeOptions, language_per_window: bool) -> int | None:
    """The undecoded part of a window, in mel frames, from which a decode's early end resumes (None: never). With a
    language per window one second: the speech often went on in another language, detected again at the resume."""
    seconds = [t for t in (options.early_end_threshold, 1.0 if language_per_window else None) if t is not None]
    return round(min(seconds) * FRAMES_PER_SECOND) if seconds else None


def _tokenizer_for(model: Any, tokenizer: Tokenizer, language: str | None) -> Tokenizer:
    return get_tokenizer(model.is_multilingual, num_languages=model.num_languages, language=language, task=tokenizer.task)


def iter_segments(
    model: Whisper | Any,
    mel: Tensor | Any,
    content_frames: int,
    tokenizer: Tokenizer,
    options: TranscribeOptions,
    *,
    alignment_heads: list[tuple[int, int]] | None = None,
    extra_filters: list[LogitFilter] | None = None,
    on_progress: Callable[[int], None] | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[Segment]:
    """Finished segments in order, as each window is decoded. ``on_progress`` gets mel frames done."""
    clips = seek_clips(options.clip_timestamps, content_frames)
    input_stride = N_FRAMES // model.dims.n_audio_ctx  # mel frames per output position: 2
    time_precision = input_stride * HOP_LENGTH / SAMPLE_RATE  # seconds per timestamp step: 0.02
    content_duration = content_frames * HOP_LENGTH / SAMPLE_RATE
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
        time_offset = seek * HOP_LENGTH / SAMPLE_RATE
        window_end = (seek + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE
        segment_size = min(N_FRAMES, content_frames - seek, clip_end - seek)
        mel_segment = pad_or_trim(mel[:, seek : seek + segment_size], N_FRAMES)
        features = window_features(model, mel_segment)

        prompt = window_prompt(state, options, model.dims.n_text_ctx)
        result = decode_with_fallback(model, features, tokenizer, options, prompt, extra_filters=extra_filters, generator=generator)
        if is_silence(result, options):
            state.seek = seek + segment_size
            if on_progress:
                on_progress(min(content_frames, state.seek) - seek)
            continue

        # without a language, each window was decoded in the language detected for it (code-switched audio)
        window_tokenizer = tokenizer if language else _tokenizer_for(model, tokenizer, result.language)
        segments, new_seek, single_ending = split_at_timestamps(result, window_tokenizer, seek, segment_size, time_precision, input_stride)
        if single_ending and min_left is not None:
            new_seek = resume_after_early_end(result.tokens, tokenizer.timestamp_begin, seek, segment_size, input_stride, new_seek, min_left)
        if options.word_timestamps and alignment_heads:
            from .timing import add_word_timestamps

            add_word_timestamps(
                segments=segments, model=model, tokenizer=window_tokenizer, audio_features=features, num_frames=segment_size,
                alignment_heads=alignment_heads, prepend_punctuations=options.prepend_punctuations,
                append_punctuations=options.append_punctuations, last_speech_timestamp=state.last_speech_timestamp,
            )
            if not single_ending:
                last_end = _last_word_end(segments)
                if last_end is not None and last_end > time_offset:
                    new_seek = round(last_end * FRAMES_PER_SECOND)
            if options.hallucination_silence_threshold is not None:
                new_seek, restart = skip_hallucinations(
                    segments, state, options.hallucination_silence_threshold, seek, segment_size, time_offset,
                    window_end, content_duration, content_frames, single_ending, new_seek,
                )
                if restart:
                    state.seek = new_seek
                    continue
            last_end = _last_word_end(segments)
            if last_end is not None:
                state.last_speech_timestamp = last_end
        state.seek = new_seek

        for seg in segments:
            if seg["start"] == seg["end"] or seg["text"].strip() == "":
                seg["text"], seg["tokens"], seg["words"] = "", [], []
            seg["id"] = state.next_id
            state.next_id += 1
            state.all_tokens.extend(seg["tokens"])
            yield _to_segment(seg, None if language else result.language)  # a segment names its language when detected per window
        if not options.condition_on_previous_text or result.temperature > 0.5:
            state.prompt_reset_since = len(state.all_tokens)
        if on_progress:
            on_progress(min(content_frames, state.seek) - seek)
