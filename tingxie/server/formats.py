"""A transcription result in the shapes of the OpenAI API: json, text, srt, verbose_json, vtt."""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..writers import OUTPUT_FORMATS

# the OpenAI API's shapes; its subtitle formats are the writers' (the same text as the CLI's files)
RESPONSE_FORMATS = ("json", "text", "verbose_json", "diarized_json", *(f for f in OUTPUT_FORMATS if f in ("srt", "vtt")))
# what the page can download: every output file the writers make
DOWNLOAD_FORMATS = OUTPUT_FORMATS


def language_name(code: str) -> str:
    """OpenAI's verbose_json names the language in lower case ("english"), not by its code."""
    from ..tokenizer import LANGUAGES

    return LANGUAGES.get(code, code)


def usage(duration: float) -> dict[str, Any]:
    # the hosted API bills whole seconds of audio
    return {"type": "duration", "seconds": math.ceil(duration)}


def segment_dict(segment: Any) -> dict[str, Any]:
    """One segment as OpenAI's verbose_json has it (no words inside: those are listed apart)."""
    return {
        "id": segment.id, "seek": segment.seek, "start": segment.start, "end": segment.end, "text": segment.text,
        "tokens": list(segment.tokens), "temperature": segment.temperature, "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio, "no_speech_prob": segment.no_speech_prob,
    }


def word_dicts(segments: list[Any]) -> list[dict[str, Any]]:
    # OpenAI gives the bare word; Whisper's tokens carry the leading space
    return [{"word": w.word.strip(), "start": w.start, "end": w.end} for s in segments for w in (s.words or [])]


def verbose_json(result: Any, task: str, granularities: tuple[str, ...]) -> dict[str, Any]:
    """``{"task", "language", "duration", "text", "segments"?, "words"?, "usage"}``; segments unless only words were asked."""
    body: dict[str, Any] = {"task": task, "language": language_name(result.language), "duration": result.duration, "text": result.text.strip()}
    if "segment" in granularities or not granularities:
        body["segments"] = [segment_dict(s) for s in result.segments]
    if "word" in granularities:
        body["words"] = word_dicts(result.segments)
    body["usage"] = usage(result.duration)
    return body


def diarized_json(result: Any) -> dict[str, Any]:
    """OpenAI's diarizing shape: ``{"task", "duration", "text", "segments": [{"type", "id", "start", "end", "text",
    "speaker"}], "usage"}``; unnamed voices are A, B, ... as the hosted model labels them, known ones keep their names."""
    letters: dict[str, str] = {}

    def label(speaker: str | None) -> str:
        if speaker is None or not speaker.startswith("SPEAKER_"):
            return speaker or "A"
        return letters.setdefault(speaker, _letters(len(letters)))

    segments = [{"type": "transcript.text.segment", "id": f"seg_{s.id}", "start": s.start, "end": s.end, "text": s.text.strip(),
                 "speaker": label(s.speaker)} for s in result.segments]
    return {"task": "transcribe", "duration": result.duration, "text": result.text.strip(), "segments": segments, "usage": usage(result.duration)}


def _letters(index: int) -> str:
    """A, B, ... Z, AA, AB, ..."""
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(ord("A") + rest) + out
    return out


def render_file(result: Any, fmt: str) -> str:
    """The text of an output file, exactly as ``tingxie transcribe -f FMT`` writes it."""
    from ..writers import SubtitleOptions, render

    return render(result.to_dict(), fmt, SubtitleOptions())


def render_response(result: Any, response_format: str, task: str, granularities: tuple[str, ...]) -> Response:
    """The HTTP response for a finished transcription in the requested format."""
    if response_format == "json":
        return JSONResponse({"text": result.text.strip(), "usage": usage(result.duration)})
    if response_format == "verbose_json":
        return JSONResponse(verbose_json(result, task, granularities))
    if response_format == "diarized_json":
        return JSONResponse(diarized_json(result))
    if response_format == "text":
        return PlainTextResponse(result.text.strip() + "\n")
    # text/plain for srt and vtt too, as the hosted API answers
    return PlainTextResponse(render_file(result, response_format))
