"""Running one transcription on a worker thread: all at once, or segment by segment as server-sent events."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TingxieError
from .errors import ApiError, from_core
from .formats import language_name, render_file, segment_dict, word_dicts
from .jobs import JobCancelled, Slot

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
    # the longest audio this server decodes (ServerSettings.max_audio_seconds); None: no limit
    max_audio_seconds: float | None = None
    # diarized_json: the known voices' names and samples (speaker turns are found inside the job, on its samples)
    speakers: tuple[tuple[str, ...], tuple[Any, ...]] | None = None

    def explain(self, error: TingxieError) -> ApiError:
        """The core's error as an API error, naming the client's file rather than our temporary copy."""
        api_error = from_core(error)
        api_error.message = api_error.message.replace(str(self.audio), self.filename)
        return api_error


def _inference(fn: Callable[[], Any]) -> Any:
    import sys

    torch = sys.modules.get("torch")
    if torch is None:  # an ONNX Runtime model: nothing records graphs
        return fn()
    # grad mode is per thread: make sure no worker ever records a graph
    with torch.inference_mode():
        return fn()


def cancelled_error(error: JobCancelled) -> ApiError:
    """The answer to a job stopped before its end (the client that left never reads it; the log does)."""
    status = {"client_disconnected": 499, "request_timeout": 504, "shutting_down": 503}.get(error.code, 503)
    return ApiError(status, error.reason, type="server_error" if status >= 500 else "invalid_request_error", code=error.code)


def job_audio(slot: Slot, job: Job) -> Any:
    """On the worker: the upload as the core reads it, within the server's duration limit and stopping when the job
    is cancelled. A stream read window by window (memory does not grow with the duration), or, for speaker turns,
    which need them all, the samples (decoded once: the transcription and the diarization share them)."""
    from ..api import check_length
    from ..mel_source import AudioFile

    audio = AudioFile(job.audio, max_seconds=job.max_audio_seconds, interrupt=slot.check)
    if job.speakers is None:
        return audio
    samples = audio.decode()
    check_length(samples.size, audio)  # said here, where the file has a name
    return samples


def iter_job(slot: Slot, job: Job, audio: Any, on_progress: Callable[[int, int], None] | None = None) -> tuple[Any, Any]:
    """On the worker: ``iter_transcribe`` of the job's audio, checking for cancellation after every window."""

    def progress(done: int, total: int) -> None:
        slot.check()  # raising here stops the long-form loop between windows
        if on_progress is not None:
            on_progress(done, total)

    info, segments = job.model.iter_transcribe(audio, job.options, on_progress=progress)

    def checked() -> Any:
        for segment in segments:
            slot.check()
            yield segment

    return info, checked()


def start_speakers(job: Job, samples: Any) -> Any:
    """On the worker, in the job's slot: the speaker turns of the samples, found beside their transcription."""
    from ..diarization import start_speakers

    names, references = job.speakers or ((), ())
    return start_speakers(samples, job.options, names=names, references=references)


async def until_disconnected(receive: Callable[[], Any], slot: Slot) -> None:
    """Wait (after the body is read) for the client to hang up, then cancel its job; cancelled once the answer is ready."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            slot.cancel("the client disconnected before the answer was ready", "client_disconnected")
            return


async def transcribe(slot: Slot, job: Job, receive: Callable[[], Any] | None = None) -> Any:
    """The whole result, computed on a worker thread; cancelled when the client leaves (given ``receive``)."""

    def work() -> Any:
        try:
            audio = job_audio(slot, job)
            if job.speakers is None:
                info, segments = iter_job(slot, job, audio)
                return job.model.assemble(info, list(segments))
            with start_speakers(job, audio) as speakers:
                info, segments = iter_job(slot, job, audio)
                result = job.model.assemble(info, list(segments))
                slot.check()
                return speakers.apply(job.model, result)
        except JobCancelled as e:  # logged here: a request cancelled at shutdown no longer awaits its job
            log.info("transcription cancelled", extra={"reason": e.code, "model": job.model_name})
            raise

    watcher = asyncio.create_task(until_disconnected(receive, slot)) if receive is not None else None
    try:
        result = await slot.submit(_inference, work)
    except JobCancelled as e:
        raise cancelled_error(e) from e
    except TingxieError as e:
        raise job.explain(e) from e
    except asyncio.CancelledError:  # the request itself was cancelled (shutdown past its grace): stop the work too
        slot.cancel("the request was cancelled", "shutting_down")
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
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
            info, segments = iter_job(slot, job, job_audio(slot, job), on_progress=lambda done, total: emit("progress", done / max(total, 1)))
        except BaseException as e:  # noqa: BLE001 - handed to the request, which answers it
            settle(error=e)
            return
        settle(info)
        collected = []
        try:
            for segment in segments:
                collected.append(segment)
                emit("segment", segment)
            emit("done", job.model.assemble(info, collected))
        except JobCancelled as e:
            log.info("stream cancelled", extra={"reason": e.code, "segments": len(collected)})
            emit("error", e)
        except BaseException as e:  # noqa: BLE001 - reported in the stream
            emit("error", e)

    future = slot.submit(_inference, work)
    try:
        await asyncio.wait({started, future}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        slot.cancel("the request was cancelled", "shutting_down")
        raise
    if not started.done():
        try:
            future.result()  # the worker failed outside the job itself: raise that
        except JobCancelled as e:
            raise cancelled_error(e) from e
        raise ApiError(500, "the transcription stopped before it started", type="server_error")
    try:
        info = started.result()
    except JobCancelled as e:
        raise cancelled_error(e) from e
    except TingxieError as e:
        raise job.explain(e) from e
    return _events(job, info, events, slot)


async def _events(job: Job, info: Any, events: asyncio.Queue, slot: Slot) -> AsyncIterator[bytes]:
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
                if isinstance(payload, JobCancelled):
                    error = cancelled_error(payload)
                elif isinstance(payload, TingxieError):
                    error = job.explain(payload)
                else:
                    error = ApiError(500, "the transcription failed", type="server_error")
                    log.error("stream failed", exc_info=payload)
                yield sse({"type": "error", **error.body()})
                return
    finally:
        # the client went away (or the stream ended): stop decoding, free the worker
        slot.cancel("the client disconnected before the stream ended", "client_disconnected")


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
