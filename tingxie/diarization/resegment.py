"""Speakers onto a transcription: each word takes the speaker of the turn it lies in, segments are split where the
speaker changes between two words, and the turns' edges move to those word boundaries."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..results import Segment, TranscriptionResult, Word
from .pipeline import Diarization
from .timeline import SpeakerTurn, merge_adjacent, speaker_at

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

SAMPLE_RATE = 16000


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
    """Within each speech region that holds words, the turns redrawn from the words' speakers: a change lies half-way
    between the last word of one speaker and the first of the next. Regions without words keep their turns."""
    out: list[SpeakerTurn] = []
    for begin, end in regions:
        a, b = begin / SAMPLE_RATE, end / SAMPLE_RATE
        inside = [w for w in words if a <= (w.start + w.end) / 2 < b and w.speaker is not None]
        if not inside:
            out.extend(t for t in turns if a <= (t.start + t.end) / 2 < b)
            continue
        start = a
        for previous, w in zip(inside, inside[1:]):
            if w.speaker != previous.speaker:
                cut = min(max((previous.end + w.start) / 2, start), b)
                out.append(SpeakerTurn(round(start, 3), round(cut, 3), previous.speaker))
                start = cut
        out.append(SpeakerTurn(round(start, 3), round(b, 3), inside[-1].speaker))
    return merge_adjacent([t for t in out if t.end > t.start])
