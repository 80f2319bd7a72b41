"""Who speaks when: speaker turns from the labelled windows of each speech region."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .windows import EmbeddingWindow

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class SpeakerTurn:
    start: float  # seconds
    end: float
    speaker: str


def region_turns(regions: list[tuple[int, int]], windows: list[EmbeddingWindow], labels: list[str]) -> list[SpeakerTurn]:
    """Each region split where its windows' speaker changes (half-way between the two windows' centres); a window
    alone between two of another speaker in the same region is taken as theirs (one 1.6-s look is too short to
    trust against the two around it)."""
    by_region: dict[int, list[tuple[EmbeddingWindow, str]]] = {}
    for w, label in zip(windows, labels):
        by_region.setdefault(w.region, []).append((w, label))
    turns: list[SpeakerTurn] = []
    for index, (begin, end) in enumerate(regions):
        members = by_region.get(index, [])
        if not members:
            continue
        names = _smoothed([label for _, label in members])
        start = begin / SAMPLE_RATE
        for i in range(1, len(members)):
            if names[i] != names[i - 1]:
                cut = (members[i - 1][0].centre_s + members[i][0].centre_s) / 2
                turns.append(SpeakerTurn(round(start, 3), round(cut, 3), names[i - 1]))
                start = cut
        turns.append(SpeakerTurn(round(start, 3), round(end / SAMPLE_RATE, 3), names[-1]))
    return turns


def _smoothed(names: list[str]) -> list[str]:
    out = list(names)
    for i in range(1, len(names) - 1):
        if names[i - 1] == names[i + 1] != names[i]:
            out[i] = names[i - 1]
    return out


def speaker_at(turns: list[SpeakerTurn], start: float, end: float) -> str | None:
    """The speaker with the most time in [start, end]; with none there, the speaker of the nearest turn."""
    if not turns:
        return None
    overlap: dict[str, float] = {}
    for t in turns:
        shared = min(end, t.end) - max(start, t.start)
        if shared > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + shared
    if overlap:
        return max(overlap, key=overlap.get)
    distances = np.array([max(t.start - end, start - t.end, 0.0) for t in turns])
    return turns[int(np.argmin(distances))].speaker


def merge_adjacent(turns: list[SpeakerTurn], gap: float = 0.0) -> list[SpeakerTurn]:
    """Consecutive turns of one speaker with at most ``gap`` s between them joined into one."""
    out: list[SpeakerTurn] = []
    for t in sorted(turns, key=lambda t: (t.start, t.end)):
        if out and out[-1].speaker == t.speaker and t.start - out[-1].end <= gap:
            out[-1] = SpeakerTurn(out[-1].start, max(out[-1].end, t.end), t.speaker)
        else:
            out.append(t)
    return out
