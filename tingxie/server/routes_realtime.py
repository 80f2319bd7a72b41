"""Live transcription over a WebSocket, ``/v1/realtime?model=tiny.en&language=en[&sample_rate=16000][&policy=alignatt]``,
and the /live page.

Protocol: the client sends binary frames of mono PCM16 little-endian audio at ``sample_rate`` and, at the end,
the text message ``{"type": "end"}``. The server sends JSON text messages: ``{"type": "partial", "text"}``,
``{"type": "final", "text", "start", "end", "words": [{"word", "start", "end", "probability"}]}`` (seconds from
the first sample of the stream), ``{"type": "done"}`` once the end has been processed (then it closes), and
``{"type": "lag", "backlog_s", "level"}`` while decoding is behind real time (``backlog_s`` seconds of audio waiting;
``level`` 0 is full quality, higher levels decode less often, then greedily, to catch up; a lag of 0 says it caught up),
and ``{"type": "error", "message"}`` (then it closes): a bad parameter or message, the server's ``--max-streams``
reached, no audio for ``--stream-idle-timeout`` seconds, or a backlog beyond ``--max-stream-lag`` seconds.

Each connection has its own transcriber. Three tasks serve it: one reads frames, one decodes on a worker
thread (never on the event loop) taking all the audio that arrived meanwhile (streams take turns), one sends; so a client that
reads slowly holds up only its own sender, and a disconnect cancels all three and stops the transcriber (a
decode already on its thread finishes; none starts after it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from fastapi.responses import HTMLResponse

from ..errors import TingxieError
from .errors import ApiError
from .origins import websocket_origin_problem
from .routes_meta import static_page

log = logging.getLogger("tingxie.server")

router = APIRouter(tags=["realtime"])
public = APIRouter(tags=["server"])

DEFAULT_SAMPLE_RATE = 16000
SAMPLE_RATE = 16000  # the transcriber's rate, whatever the client sends
# backlog (s of audio waiting when the decoder takes it) above which the stream is lagging: degrade one level
LAG_S = 2.0
CAUGHT_UP_S = 0.3  # backlog under which a take counts as caught up
CAUGHT_UP_TAKES = 10  # caught-up takes in a row before the quality goes back up one level
LAG_EVENT_EVERY_S = 1.0  # lag events while lagging, at most this often
DECODES_AT_ONCE = 1  # streams' decodes running at once (see decode_turns)


@public.get("/live", response_class=HTMLResponse, include_in_schema=False)
async def live_page() -> HTMLResponse:
    return static_page("live.html")


class StreamRequestError(Exception):
    """A bad query parameter or message: told to the client, then the socket is closed with ``code``."""

    def __init__(self, message: str, code: int = status.WS_1008_POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def parse_params(query: Any, registry: Any, default_policy: str = "alignatt") -> tuple[str, str | None, int, str]:
    """(model name, language, sample rate, commit policy) from the query string; StreamRequestError for a bad one."""
    from ..streaming.audio_in import check_rate
    from ..streaming.options import POLICIES
    from ..tokenizer import normalize_language

    policy = query.get("policy") or default_policy
    if policy not in POLICIES:
        raise StreamRequestError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    try:
        name = registry.resolve(query.get("model"))
        language = normalize_language(query.get("language") or None)
        raw_rate = query.get("sample_rate") or str(DEFAULT_SAMPLE_RATE)
        try:
            rate = int(raw_rate)
        except ValueError:
            raise StreamRequestError(f"sample_rate must be a whole number of Hz, got {raw_rate!r}") from None
        return name, language, check_rate(rate), policy
    except ApiError as e:
        raise StreamRequestError(e.message) from e
    except TingxieError as e:
        raise StreamRequestError(str(e)) from e


def new_transcriber(model: Any, language: str | None, policy: str = "alignatt") -> Any:
    from ..streaming import StreamingTranscriber, StreamOptions

    return StreamingTranscriber(model, StreamOptions(language=language, policy=policy))


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    if (problem := websocket_origin_problem(websocket)) is not None:  # another site's page (origins.py): no handshake (403)
        log.warning("websocket refused", extra={"reason": problem})
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    await websocket.accept()
    state = websocket.app.state
    settings = state.settings
    streams = active_streams(websocket.app)
    if len(streams) >= settings.max_streams:
        await _send_error_and_close(websocket, StreamRequestError(
            f"this server already serves its maximum of {settings.max_streams} live streams (tingxie serve --max-streams); try again later",
            status.WS_1013_TRY_AGAIN_LATER))
        return
    slot = object()  # holds this stream's place while its model loads, so that concurrent opens count it
    streams.add(slot)
    try:
        await _open_and_run(websocket, state, streams, slot)
    finally:
        streams.discard(slot)


async def _open_and_run(websocket: WebSocket, state: Any, streams: set, slot: object) -> None:
    settings = state.settings
    try:
        name, language, rate, policy = parse_params(websocket.query_params, state.models, settings.stream_policy)
        try:
            model = await state.models.get_streaming(name)
            transcriber = await asyncio.to_thread(new_transcriber, model, language, policy)  # loads the VAD once per process
        except ApiError as e:
            raise StreamRequestError(e.message, status.WS_1011_INTERNAL_ERROR if e.status >= 500 else status.WS_1008_POLICY_VIOLATION) from e
        except TingxieError as e:
            raise StreamRequestError(str(e)) from e
    except StreamRequestError as e:
        await _send_error_and_close(websocket, e)
        return
    log.info("realtime stream opened", extra={"model": name, "language": language, "sample_rate": rate, "policy": policy})
    session = RealtimeSession(websocket, transcriber, rate, idle_timeout=settings.stream_idle_timeout, max_lag=settings.max_stream_lag,
                              turns=decode_turns(websocket.app))
    streams.discard(slot)  # the session takes its place
    streams.add(session)
    try:
        await session.run()
    finally:
        streams.discard(session)


def active_streams(app: Any) -> set:
    """The app's open realtime sessions, and a place holder for each stream still opening (for --max-streams, logs, tests)."""
    streams = getattr(app.state, "realtime_streams", None)
    if streams is None:
        streams = app.state.realtime_streams = set()
    return streams


def decode_turns(app: Any) -> asyncio.Semaphore:
    """The app's streams decode one at a time: each decode already uses every core, and side by side their threads
    only took the cores from each other (ONNX Runtime's spin between kernels)."""
    turns = getattr(app.state, "realtime_decode_turns", None)
    if turns is None:
        turns = app.state.realtime_decode_turns = asyncio.Semaphore(DECODES_AT_ONCE)
    return turns


async def _send_error_and_close(websocket: WebSocket, error: StreamRequestError) -> None:
    try:
        await websocket.send_json({"type": "error", "message": error.message})
        await websocket.close(code=error.code, reason=error.message[:120])  # a close reason is at most 123 bytes
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client is already gone


class RealtimeSession:
    """One connection: receive audio, decode off the event loop, send events."""

    def __init__(self, websocket: WebSocket, transcriber: Any, sample_rate: int, *, idle_timeout: float | None = None,
                 max_lag: float | None = None, turns: asyncio.Semaphore | None = None) -> None:
        from ..streaming.audio_in import Resampler

        self.websocket = websocket
        self.transcriber = transcriber
        self.resample = Resampler(sample_rate)
        self.idle_timeout = idle_timeout
        self.max_lag = max_lag
        self.turns = turns or asyncio.Semaphore(1)  # decodes take turns with the other streams' (FIFO: round robin)
        self._audio: list[np.ndarray] = []  # arrived, not yet decoded
        self._caught_up_takes = 0
        self._lag_sent_at = 0.0  # monotonic time of the last lag event
        self._lagging = False
        self.max_backlog_s = 0.0  # the largest backlog seen, for logs and tests
        self._odd_byte = b""  # a frame may split a 16-bit sample
        self._ended = False
        self._wake = asyncio.Event()  # audio or the end arrived
        self._finals: list[dict] = []
        self._partial: dict | None = None  # only the newest partial matters to a client that reads slowly
        self._lag: dict | None = None  # the newest lag event not sent yet
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
            if self.transcriber is not None:
                self.transcriber.close()  # a decode still on its thread finishes, its result is dropped, no other starts
            self.transcriber = None
            log.info("realtime stream closed", extra={"max_backlog_s": round(self.max_backlog_s, 2)})

    # ------------------------------------------------------------------------------------------ tasks

    async def _receive(self) -> None:
        while True:
            try:
                # idle only while the client should be sending: after the end it waits for the last finals
                timeout = None if self._ended or self._closing is not None else self.idle_timeout
                message = await asyncio.wait_for(self.websocket.receive(), timeout)
            except asyncio.TimeoutError:
                self._finish_with({"type": "error", "message": f"no audio for {self.idle_timeout:g} s; the stream is closed "
                                   "(tingxie serve --stream-idle-timeout)"}, status.WS_1008_POLICY_VIOLATION)
                self._wake.set()
                continue
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
                if self._closing is not None:
                    return  # an error ends the stream: nothing more to decode
                if self._audio:
                    async with self.turns:  # the audio is taken once it is this stream's turn: all that arrived meanwhile
                        audio = np.concatenate(self._audio)
                        self._audio = []
                        if self._pace(len(audio) / SAMPLE_RATE):
                            return
                        events = await asyncio.to_thread(self.transcriber.accept, audio)
                    self._publish(events)
                    if self._audio:
                        self._wake.set()  # more arrived while decoding
                if self._ended and not self._audio:
                    async with self.turns:
                        events = await asyncio.to_thread(self.transcriber.finish)
                    self._publish(events)
                    self._finish_with({"type": "done"}, status.WS_1000_NORMAL_CLOSURE)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug, not the client's doing: say so, and close
            log.exception("realtime stream failed")
            self._finish_with({"type": "error", "message": f"transcription failed: {e}"}, status.WS_1011_INTERNAL_ERROR)

    def _pace(self, backlog_s: float) -> bool:
        """Back-pressure, given the audio that waited for this take: degrade when behind real time, recover when
        caught up, tell the client (lag events); True when the backlog is past ``max_lag`` and the stream is closed."""
        self.max_backlog_s = max(self.max_backlog_s, backlog_s)
        if self.max_lag is not None and backlog_s > self.max_lag:
            log.warning("realtime stream too far behind", extra={"backlog_s": round(backlog_s, 2)})
            self._finish_with({"type": "error", "message": f"this stream fell {backlog_s:.1f} s behind real time (the server is overloaded; "
                               f"tingxie serve --max-stream-lag {self.max_lag:g}); try again later"}, status.WS_1013_TRY_AGAIN_LATER)
            return True
        transcriber = self.transcriber
        now = time.monotonic()
        if backlog_s > LAG_S:
            self._caught_up_takes = 0
            if not self._lagging or now - self._lag_sent_at >= LAG_EVENT_EVERY_S:
                transcriber.degrade(transcriber.level + 1)  # one level per lag event: each gets a second to show its effect
                self._lag_event(backlog_s, transcriber.level, now)
        elif backlog_s < CAUGHT_UP_S:
            self._caught_up_takes += 1
            if self._lagging:
                self._lag_event(0.0, transcriber.level, now)
            if transcriber.level and self._caught_up_takes >= CAUGHT_UP_TAKES:
                transcriber.degrade(transcriber.level - 1)
                self._caught_up_takes = 0
        return False

    def _lag_event(self, backlog_s: float, level: int, now: float) -> None:
        self._lagging = backlog_s > 0
        self._lag_sent_at = now
        self._lag = {"type": "lag", "backlog_s": round(backlog_s, 2), "level": level}
        self._outgoing.set()

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
            while self._finals or self._partial is not None or self._lag is not None:
                if self._lag is not None:
                    lag, self._lag = self._lag, None
                    await self.websocket.send_json(lag)
                elif self._finals:
                    await self.websocket.send_json(self._finals.pop(0))
                else:
                    partial, self._partial = self._partial, None
                    await self.websocket.send_json(partial)
            if self._closing is not None:
                message, code = self._closing
                await self.websocket.send_json(message)
                await self.websocket.close(code=code)
                return
