"""What a stream emits: ``partial`` (the current guess, may change) and ``final`` (committed, never changes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class TimedWord:
    """A word with its times in seconds from the first sample of the stream.

    ``word`` keeps Whisper's spelling, leading space included; ``segment_end`` is True for the last word
    of a Whisper segment (a place where the audio buffer may be cut).
    """

    word: str
    start: float
    end: float
    probability: float = 1.0
    segment_end: bool = False

    def shifted(self, seconds: float) -> TimedWord:
        return TimedWord(self.word, round(self.start + seconds, 3), round(self.end + seconds, 3), self.probability, self.segment_end)

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": self.start, "end": self.end, "probability": round(self.probability, 4)}


def join_words(words: list[TimedWord] | tuple[TimedWord, ...]) -> str:
    return "".join(w.word for w in words).strip()


@dataclass(frozen=True)
class StreamEvent:
    """One message of a stream. A ``final`` carries its words and their span; a ``partial`` only text."""

    type: Literal["partial", "final"]
    text: str
    words: tuple[TimedWord, ...] = field(default=())

    @property
    def start(self) -> float | None:
        return self.words[0].start if self.words else None

    @property
    def end(self) -> float | None:
        return self.words[-1].end if self.words else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON message the WebSocket endpoint sends."""
        if self.type == "partial":
            return {"type": "partial", "text": self.text}
        return {"type": "final", "text": self.text, "start": self.start, "end": self.end, "words": [w.to_dict() for w in self.words]}


def partial(words: list[TimedWord]) -> StreamEvent:
    return StreamEvent("partial", join_words(words))


def final(words: list[TimedWord]) -> StreamEvent:
    return StreamEvent("final", join_words(words), tuple(words))
