"""The work done for one decoded 30-s window, the same for sequential long-form, VAD-batched chunks and streams:
silence check, split at timestamps, resume after an early end, word timing, hallucination skip, empty segments.

``finish_window`` turns a window's ``DecodingResult`` into its segments and the seek where the next window starts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, SAMPLE_RATE
from .decoding.nonspeech import hears_no_speech
from .decoding.window import DecodingResult
from .engine import Engine
from .options import TranscribeOptions
from .results import Segment, Word
from .tokenizer import Tokenizer

PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"
INPUT_STRIDE = 2  # mel frames per encoder position
TIME_PRECISION = INPUT_STRIDE * HOP_LENGTH / SAMPLE_RATE  # seconds per timestamp token: 0.02


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
    segments: list[dict], last_speech_timestamp: float, threshold: float, previous_seek: int, segment_size: int,
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
    hal_last_end = last_speech_timestamp
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




@dataclass(frozen=True)
class WindowOutcome:
    """What one window gave: its segments (dicts, times in the recording), where the next window starts, whether the
    window is to be decoded again from ``next_seek`` (a hallucination skipped), and the last word's end."""

    segments: list[dict]
    next_seek: int
    restart: bool = False
    silent: bool = False
    last_speech_timestamp: float = 0.0


def finish_window(
    engine: Engine,
    result: DecodingResult,
    tokenizer: Tokenizer,
    options: TranscribeOptions,
    *,
    seek: int,
    segment_size: int,
    content_frames: int,
    alignment_heads: list[tuple[int, int]] | None,
    last_speech_timestamp: float = 0.0,
    early_end_min_left: int | None = None,
    window_speech: Callable[[], float | None] | None = None,
) -> WindowOutcome:
    """The segments of one decoded window starting at mel frame ``seek`` with ``segment_size`` frames of audio.
    ``window_speech``: the seconds of VAD speech in the window, for the non-speech check (laughter, music)."""
    if is_silence(result, options) or (window_speech is not None and hears_no_speech(result, options, window_speech)):
        return WindowOutcome([], seek + segment_size, silent=True, last_speech_timestamp=last_speech_timestamp)
    time_offset = seek * HOP_LENGTH / SAMPLE_RATE
    window_end = (seek + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE
    segments, new_seek, single_ending = split_at_timestamps(result, tokenizer, seek, segment_size, TIME_PRECISION, INPUT_STRIDE)
    aligned_frames = segment_size
    if single_ending and early_end_min_left is not None:
        resumed = resume_after_early_end(result.tokens, tokenizer.timestamp_begin, seek, segment_size, INPUT_STRIDE, new_seek, early_end_min_left)
        if resumed != new_seek:  # the words are aligned within the decoded part (DTW ends on the last frame it is given)
            new_seek, aligned_frames = resumed, resumed - seek
    if options.aligns_words and alignment_heads:
        from .timing import add_word_timestamps

        def align(frames: int) -> list[dict]:
            aligned = copy.deepcopy(segments)
            add_word_timestamps(
                segments=aligned, engine=engine, tokenizer=tokenizer, audio_features=result.audio_features, num_frames=frames,
                alignment_heads=alignment_heads, prepend_punctuations=options.prepend_punctuations,
                append_punctuations=options.append_punctuations, last_speech_timestamp=last_speech_timestamp,
            )
            return aligned

        aligned = align(aligned_frames)
        if not single_ending:
            last_end = _last_word_end(aligned)
            if last_end is not None and early_end_min_left is not None and round(last_end * FRAMES_PER_SECOND) > new_seek + early_end_min_left:
                # the words were spread far past the decoded text's last timestamp (DTW ends on the window's last
                # frame): aligned again within the decoded part, and the next window starts at that timestamp
                aligned = align(new_seek - seek)
            elif last_end is not None and last_end > time_offset and options.word_timestamps:
                new_seek = round(last_end * FRAMES_PER_SECOND)
        segments = aligned
        if options.hallucination_silence_threshold is not None:
            content_duration = content_frames * HOP_LENGTH / SAMPLE_RATE
            new_seek, restart = skip_hallucinations(
                segments, last_speech_timestamp, options.hallucination_silence_threshold, seek, segment_size, time_offset,
                window_end, content_duration, content_frames, single_ending, new_seek,
            )
            if restart:
                return WindowOutcome([], new_seek, restart=True, last_speech_timestamp=last_speech_timestamp)
        last_end = _last_word_end(segments)
        if last_end is not None:
            last_speech_timestamp = last_end
    for seg in segments:  # the reference keeps a segment whose text is empty or whose times collapse, emptied
        if seg["start"] == seg["end"] or seg["text"].strip() == "":
            seg["text"], seg["tokens"], seg["words"] = "", [], []
    return WindowOutcome(segments, new_seek, last_speech_timestamp=last_speech_timestamp)
