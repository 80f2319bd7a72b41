"""Speakers onto a transcription: each word takes the speaker of the turn it lies in, segments are split where the
speaker changes between two words, and the turns' changes move to the pauses between words near them."""

from __future__ import annotations

import bisect
from dataclasses import replace
from typing import TYPE_CHECKING

from ..results import Segment, TranscriptionResult, Word
from .pipeline import Diarization
from .timeline import SpeakerTurn, merge_adjacent, speaker_at

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

SNAP_S = 1.0  # a change of speaker moves to a pause between words at most this far (a window step and a bit)


def assign_speakers(result: TranscriptionResult, diarization: Diarization, tokenizer: Tokenizer | None = None) -> tuple[TranscriptionResult, list[SpeakerTurn]]:
    """The result with a speaker on every segment and word (segments split at speaker changes; split pieces get their
    text's tokens from ``tokenizer``, or none without one), and the turns with their changes moved to word boundaries.
    Every word is kept: a word said over another voice goes to the voice with the most time under it."""
    turns = list(diarization.turns)
    if not turns:
        return result, turns
    segments: list[Segment] = []
    for segment in result.segments:
        for piece in _split(segment, turns, tokenizer):
            segments.append(replace(piece, id=len(segments)))
    words = [w for s in segments for w in (s.words or [])]
    return replace(result, segments=segments), _turns_at_words(turns, words, diarization.regions)


def _split(segment: Segment, turns: list[SpeakerTurn], tokenizer: Tokenizer | None) -> list[Segment]:
    if not segment.words:
        return [replace(segment, speaker=speaker_at(turns, segment.start, segment.end))]
    words = [replace(w, speaker=speaker_at(turns, w.start, w.end)) for w in segment.words]
    runs: list[list[Word]] = [[words[0]]]
    for w in words[1:]:
        if w.speaker == runs[-1][-1].speaker:
            runs[-1].append(w)
        else:
            runs.append([w])
    if len(runs) == 1:
        return [replace(segment, words=words, speaker=words[0].speaker)]
    pieces = []
    for i, run in enumerate(runs):
        text = "".join(w.word for w in run)
        pieces.append(replace(
            segment, start=segment.start if i == 0 else run[0].start, end=segment.end if i == len(runs) - 1 else run[-1].end,
            text=text, tokens=tokenizer.encode(text) if tokenizer is not None else [], words=run, speaker=run[0].speaker,
        ))
    return pieces


def _turns_at_words(turns: list[SpeakerTurn], words: list[Word], regions: tuple[tuple[int, int], ...]) -> list[SpeakerTurn]:
    """The turns with each change of speaker inside a stretch of speech moved to the middle of the nearest pause
    between two words (within SNAP_S of it). A change with no words near it, and speech the transcription has no words
    for (a language the model does not write, a mumble), keep the turns the voices gave."""
    del regions  # the turns already lie within the regions; kept for the call's shape
    timed = sorted((w for w in words if w.speaker is not None), key=lambda w: w.start)
    pauses = [(a.end + b.start) / 2 for a, b in zip(timed, timed[1:]) if b.start >= a.end]
    out = [replace(t) for t in turns]
    for i in range(1, len(out)):
        before, after = out[i - 1], out[i]
        if before.speaker == after.speaker or abs(after.start - before.end) > 1e-6:
            continue  # a pause already separates them
        cut = before.end
        k = bisect.bisect_left(pauses, cut)
        near = [p for p in pauses[max(k - 1, 0) : k + 1] if abs(p - cut) <= SNAP_S and before.start < p < after.end]
        if near:
            moved = round(min(near, key=lambda p: abs(p - cut)), 3)
            out[i - 1], out[i] = replace(before, end=moved), replace(after, start=moved)
    return merge_adjacent([t for t in out if t.end > t.start])
