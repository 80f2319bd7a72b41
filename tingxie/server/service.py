"""Running one transcription on a worker thread: all at once, or segment by segment as server-sent events."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TingxieError
from .errors import ApiError, from_core
from .formats import language_name, render_file, segment_dict, word_dicts
from .jobs import Slot

log = logging.getLogger("tingxie.server")


@dataclass(frozen=True)
class Job:
    """What one request asks for, checked and ready to run."""

    model: Any
    model_name: str
    audio: Path
    filename: str
    options: Any  # TranscribeOptions
    task: str
    granularities: tuple[str, ...] = ()
    include_formats: tuple[str, ...] = ()

    def explain(self, error: TingxieError) -> ApiError:
        """The core's error as an API error, naming the client's file rather than our temporary copy."""
        api_error = from_core(error)
        api_error.message = api_error.message.replace(str(self.audio), self.filename)
        return api_error


def _inference(fn: Callable[[], Any]) -> Any:
    import torch

    # grad mode is per thread: make sure no worker ever records a graph
    with torch.inference_mode():
        return fn()


async def transcribe(slot: Slot, job: Job) -> Any:
    """The whole result, computed on a worker thread."""
    try:
        result = await slot.submit(_inference, lambda: job.model.transcribe(job.audio, job.options))
    except TingxieError as e:
        raise job.explain(e) from e
    log.info(
        "transcribed",
        extra={"model": job.model_name, "audio_seconds": round(result.duration, 2), "queue_seconds": round(slot.queue_seconds, 3),
               "segments": len(result.segments)},
    )
    return result


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


async def stream(slot: Slot, job: Job) -> AsyncIterator[bytes]:
    """Start the job and, once its audio is decoded, an event stream of its segments.

    Returns only after the audio decoded (and the language is known), so a bad file is still a plain 400.
    Events: ``transcript.text.delta`` per segment (with the segment and progress as extensions) and at
    the end ``transcript.text.done`` with the full text, as the hosted API streams.
    """
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    started: asyncio.Future = loop.create_future()
    cancelled = threading.Event()

    def emit(kind: str, payload: Any) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (kind, payload))

    def settle(value: Any = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if started.done():
                return
            if error is not None:
                started.set_exception(error)
            else:
                started.set_result(value)

        loop.call_soon_threadsafe(apply)

    def work() -> None:
        try:
            info, segments = job.model.iter_transcribe(
                job.audio, job.options, on_progress=lambda done, total: emit("progress", done / max(total, 1))
            )
        except BaseException as e:  # noqa: BLE001 - handed to the request, which answers it
            settle(error=e)
            return
        settle(info)
        collected = []
        try:
            for segment in segments:
                if cancelled.is_set():  # the client went away: stop decoding, free the worker
                    log.info("stream cancelled", extra={"segments": len(collected)})
                    return
                collected.append(segment)
                emit("segment", segment)
            emit("done", job.model.assemble(info, collected))
        except BaseException as e:  # noqa: BLE001 - reported in the stream
            emit("error", e)

    future = slot.submit(_inference, work)
    await asyncio.wait({started, future}, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        future.result()  # the worker failed outside the job itself: raise that
        raise ApiError(500, "the transcription stopped before it started", type="server_error")
    try:
        info = started.result()
    except TingxieError as e:
        raise job.explain(e) from e
    return _events(job, info, events, cancelled)


async def _events(job: Job, info: Any, events: asyncio.Queue, cancelled: threading.Event) -> AsyncIterator[bytes]:
    words = "word" in job.granularities
    progress = 0.0
    try:
        while True:
            kind, payload = await events.get()
            if kind == "progress":
                progress = payload
                yield sse({"type": "transcript.text.delta", "delta": "", "progress": round(progress, 4)})
            elif kind == "segment":
                event = {"type": "transcript.text.delta", "delta": payload.text, "segment": segment_dict(payload),
                         "progress": round(max(progress, min(payload.end / max(info.duration, 1e-9), 1.0)), 4)}
                if words:
                    event["words"] = word_dicts([payload])
                yield sse(event)
            elif kind == "done":
                yield sse(_done_event(job, payload))
                yield sse("[DONE]")
                return
            else:
                error = job.explain(payload) if isinstance(payload, TingxieError) else ApiError(500, "the transcription failed", type="server_error")
                if not isinstance(payload, TingxieError):
                    log.error("stream failed", exc_info=payload)
                yield sse({"type": "error", **error.body()})
                return
    finally:
        cancelled.set()


def _done_event(job: Job, result: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "transcript.text.done", "text": result.text.strip(),
        # extensions: what verbose_json would hold, so a streaming client needs no second request
        "language": language_name(result.language), "duration": result.duration,
        "segments": [segment_dict(s) for s in result.segments],
    }
    if "word" in job.granularities:
        event["words"] = word_dicts(result.segments)
    if job.include_formats:
        event["formats"] = {fmt: render_file(result, fmt) for fmt in job.include_formats}
    return event
