"""Typed transcription results that serialise to the reference implementation's JSON schema."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float
    speaker: str | None = None  # set by diarization

    def to_dict(self) -> dict:
        d = {"word": self.word, "start": self.start, "end": self.end, "probability": self.probability}
        if self.speaker is not None:
            d["speaker"] = self.speaker
        return d


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None
    language: str | None = None
    speaker: str | None = None  # set by diarization

    def to_dict(self) -> dict:
        d = {
            "id": self.id,
            "seek": self.seek,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "tokens": list(self.tokens),
            "temperature": self.temperature,
            "avg_logprob": self.avg_logprob,
            "compression_ratio": self.compression_ratio,
            "no_speech_prob": self.no_speech_prob,
        }
        if self.words is not None:
            d["words"] = [w.to_dict() for w in self.words]
        if self.language is not None:  # set where the language was detected window by window
            d["language"] = self.language
        if self.speaker is not None:
            d["speaker"] = self.speaker
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Segment:
        words = d.get("words")
        return cls(
            id=d["id"], seek=d["seek"], start=d["start"], end=d["end"], text=d["text"], tokens=list(d["tokens"]),
            temperature=d["temperature"], avg_logprob=d["avg_logprob"], compression_ratio=d["compression_ratio"],
            no_speech_prob=d["no_speech_prob"], words=None if words is None else [Word(**w) for w in words],
            language=d.get("language"), speaker=d.get("speaker"),
        )


@dataclass(frozen=True)
class TranscriptionResult:
    text: str
    language: str
    segments: list[Segment]
    duration: float = 0.0
    language_probs: dict[str, float] | None = field(default=None)

    def to_dict(self) -> dict:
        """The reference's result dict: text, segments, language (+ language_probs when detected)."""
        d = {"text": self.text, "segments": [s.to_dict() for s in self.segments], "language": self.language}
        if self.language_probs is not None:
            d["language_probs"] = self.language_probs
        return d

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in (s.words or [])]
