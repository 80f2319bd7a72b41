"""Live transcription over a WebSocket, ``/v1/realtime?model=tiny.en&language=en[&sample_rate=16000]``, and the /live page.

Protocol: the client sends binary frames of mono PCM16 little-endian audio at ``sample_rate`` and, at the end,
the text message ``{"type": "end"}``. The server sends JSON text messages: ``{"type": "partial", "text"}``,
``{"type": "final", "text", "start", "end", "words": [{"word", "start", "end", "probability"}]}`` (seconds from
the first sample of the stream), ``{"type": "done"}`` once the end has been processed (then it closes), and
``{"type": "error", "message"}`` (then it closes).

Each connection has its own transcriber. Three tasks serve it: one reads frames, one decodes on a worker
thread (never on the event loop) taking all the audio that arrived meanwhile, one sends; so a client that
reads slowly holds up only its own sender, and a disconnect cancels all three.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from fastapi.responses import HTMLResponse

from ..errors import TingxieError
from .errors import ApiError
from .routes_meta import static_page

log = logging.getLogger("tingxie.server")

router = APIRouter(tags=["realtime"])
public = APIRouter(tags=["server"])

DEFAULT_SAMPLE_RATE = 16000


@public.get("/live", response_class=HTMLResponse, include_in_schema=False)
async def live_page() -> HTMLResponse:
    return static_page("live.html")


class StreamRequestError(Exception):
    """A bad query parameter or message: told to the client, then the socket is closed with ``code``."""

    def __init__(self, message: str, code: int = status.WS_1008_POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def parse_params(query: Any, registry: Any) -> tuple[str, str | None, int]:
    """(model name, language, sample rate) from the query string; StreamRequestError for a bad one."""
    from ..streaming.audio_in import check_rate
    from ..tokenizer import normalize_language

    try:
        name = registry.resolve(query.get("model"))
        language = normalize_language(query.get("language") or None)
        raw_rate = query.get("sample_rate") or str(DEFAULT_SAMPLE_RATE)
        try:
            rate = int(raw_rate)
        except ValueError:
            raise StreamRequestError(f"sample_rate must be a whole number of Hz, got {raw_rate!r}") from None
        return name, language, check_rate(rate)
    except ApiError as e:
        raise StreamRequestError(e.message) from e
    except TingxieError as e:
        raise StreamRequestError(str(e)) from e


def new_transcriber(model: Any, language: str | None) -> Any:
    from ..streaming import StreamingTranscriber, StreamOptions

    return StreamingTranscriber(model, StreamOptions(language=language))


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    await websocket.accept()
    state = websocket.app.state
    try:
        name, language, rate = parse_params(websocket.query_params, state.models)
        try:
            model = await state.models.get(name)
            transcriber = await asyncio.to_thread(new_transcriber, model, language)  # loads the VAD once per process
        except ApiError as e:
            raise StreamRequestError(e.message, status.WS_1011_INTERNAL_ERROR if e.status >= 500 else status.WS_1008_POLICY_VIOLATION) from e
        except TingxieError as e:
            raise StreamRequestError(str(e)) from e
    except StreamRequestError as e:
        await _send_error_and_close(websocket, e)
        return
    log.info("realtime stream opened", extra={"model": name, "language": language, "sample_rate": rate})
    session = RealtimeSession(websocket, transcriber, rate)
    streams = active_streams(websocket.app)
    streams.add(session)
    try:
        await session.run()
    finally:
        streams.discard(session)


def active_streams(app: Any) -> set:
    """The app's open realtime sessions (kept in its state, for logs and tests)."""
    streams = getattr(app.state, "realtime_streams", None)
    if streams is None:
        streams = app.state.realtime_streams = set()
    return streams


async def _send_error_and_close(websocket: WebSocket, error: StreamRequestError) -> None:
    try:
        await websocket.send_json({"type": "error", "message": error.message})
        await websocket.close(code=error.code, reason=error.message[:120])  # a close reason is at most 123 bytes
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client is already gone


class RealtimeSession:
    """One connection: receive audio, decode off the event loop, send events."""

    def __init__(self, websocket: WebSocket, transcriber: Any, sample_rate: int) -> None:
        from ..streaming.audio_in import Resampler

        self.websocket = websocket
        self.transcriber = transcriber
        self.resample = Resampler(sample_rate)
        self._audio: list[np.ndarray] = []  # arrived, not yet decoded
        self._odd_byte = b""  # a frame may split a 16-bit sample
        self._ended = False
        self._wake = asyncio.Event()  # audio or the end arrived
        self._finals: list[dict] = []
        self._partial: dict | None = None  # only the newest partial matters to a client that reads slowly
        self._outgoing = asyncio.Event()
        self._closing: tuple[dict, int] | None = None  # the last message (done or error) and the close code

    async def run(self) -> None:
        tasks = [asyncio.create_task(c) for c in (self._receive(), self._work(), self._send())]
        try:
            # the receiver ends on disconnect (or a protocol error); the sender ends after done or an error
            await asyncio.wait([tasks[0], tasks[2]], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.transcriber = None  # a decode still on its thread finishes, and its result is dropped
            log.info("realtime stream closed")

    # ------------------------------------------------------------------------------------------ tasks

    async def _receive(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                if not self._ended:
                    self._take_audio(message["bytes"])
            elif message.get("text") is not None:
                error = self._control(message["text"])
                if error:
                    self._finish_with({"type": "error", "message": error}, status.WS_1003_UNSUPPORTED_DATA)
                    # keep reading until the sender has closed the socket
            self._wake.set()

    def _take_audio(self, data: bytes) -> None:
        from ..streaming.audio_in import pcm16_to_float

        data = self._odd_byte + data
        whole = len(data) - len(data) % 2
        self._odd_byte = data[whole:]
        samples = self.resample(pcm16_to_float(data[:whole]))
        if len(samples):
            self._audio.append(samples)

    def _control(self, text: str) -> str | None:
        """Handle a text message; returns an error message for one the protocol does not know."""
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            return 'text messages must be JSON; send audio as binary PCM16 frames and {"type": "end"} at the end'
        if not isinstance(message, dict) or message.get("type") != "end":
            return 'unknown message; the only text message is {"type": "end"} (audio goes in binary PCM16 frames)'
        if not self._ended:
            self._ended = True
            tail = self.resample.flush()
            if len(tail):
                self._audio.append(tail)
        return None

    async def _work(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._audio:
                    audio = np.concatenate(self._audio)
                    self._audio = []
                    self._publish(await asyncio.to_thread(self.transcriber.accept, audio))
                    if self._audio:
                        self._wake.set()  # more arrived while decoding
                if self._ended and not self._audio:
                    self._publish(await asyncio.to_thread(self.transcriber.finish))
                    self._finish_with({"type": "done"}, status.WS_1000_NORMAL_CLOSURE)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug, not the client's doing: say so, and close
            log.exception("realtime stream failed")
            self._finish_with({"type": "error", "message": f"transcription failed: {e}"}, status.WS_1011_INTERNAL_ERROR)

    def _publish(self, events: list) -> None:
        for event in events:
            message = event.to_dict()
            if message["type"] == "final":
                self._finals.append(message)
                self._partial = None  # a final replaces whatever partial is still unsent
            else:
                self._partial = message
        if events:
            self._outgoing.set()

    def _finish_with(self, message: dict, code: int) -> None:
        if self._closing is None:
            self._closing = (message, code)
            self._outgoing.set()

    async def _send(self) -> None:
        while True:
            await self._outgoing.wait()
            self._outgoing.clear()
            while self._finals or self._partial is not None:
                if self._finals:
                    await self.websocket.send_json(self._finals.pop(0))
                else:
                    partial, self._partial = self._partial, None
                    await self.websocket.send_json(partial)
            if self._closing is not None:
                message, code = self._closing
                await self.websocket.send_json(message)
                await self.websocket.close(code=code)
                return
