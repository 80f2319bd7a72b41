"""Read timeouts: a connection must send its request head in time, and a request body may not stall.

uvicorn times out idle keep-alive connections but not a client that sends its headers a byte at a time (or
never finishes its body), so such clients could hold connections open forever. ``guarded_h11_protocol``
closes a connection whose request head has not arrived within ``read_timeout`` (after it opened, or after
the previous answer); ``ReadTimeoutMiddleware`` answers 408 when a body pauses longer than ``read_timeout``
or takes longer than ``upload_timeout`` in all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .errors import error_body
from .middleware import send_json

log = logging.getLogger("tingxie.server")

_TIMEOUT_ANSWER = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 25\r\nconnection: close\r\n\r\nthe request head was slow"


def guarded_h11_protocol(read_timeout: float) -> type:
    """uvicorn's h11 protocol, closing connections that do not send a request head within ``read_timeout`` seconds."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_timer()  # the next request on this connection gets the same time for its head

        def handle_websocket_upgrade(self, event: Any) -> None:
            self._disarm_head_timer()  # the WebSocket protocol owns the connection from here
            super().handle_websocket_upgrade(event)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            if not self.transport.is_closing():
                self._head_timer = self.loop.call_later(read_timeout, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.cycle is not None and not self.cycle.response_complete:
                return  # the head came and its request is being served (its body is the middleware's to time)
            if self.transport.is_closing():
                return
            pending = bool(self.conn.trailing_data[0])  # bytes of a head that has not come whole
            if self.cycle is not None and not pending:
                return  # idle between requests: uvicorn's keep-alive timeout closes it
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            log.warning("connection closed: no request head in time", extra={"client": client, "read_timeout": read_timeout})
            try:
                if pending:
                    self.transport.write(_TIMEOUT_ANSWER)
            finally:
                self.transport.close()

    return GuardedH11Protocol


class _ReadTimedOut(Exception):
    """Raised into the app's body read when the client stops sending."""


class ReadTimeoutMiddleware:
    """408 for a request body that pauses longer than ``read_timeout`` or takes longer than ``upload_timeout`` in all."""

    def __init__(self, app: Any, read_timeout: float, upload_timeout: float) -> None:
        self.app = app
        self.read_timeout = read_timeout
        self.upload_timeout = upload_timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        body_done = False
        timed_out: list[str] = []
        answered = False

        async def timed_receive() -> dict:
            nonlocal body_done
            if body_done:  # after the body only a disconnect can come: wait for it as long as it takes
                return await receive()
            left = self.upload_timeout - (time.monotonic() - started)
            wait = min(self.read_timeout, left)
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.0))
            except TimeoutError:
                timed_out.append(
                    f"the request body stalled for over {self.read_timeout:g} s" if wait == self.read_timeout
                    else f"the request body took over {self.upload_timeout:g} s to arrive"
                )
                raise _ReadTimedOut() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal answered
            if timed_out:  # whatever the aborted read turned into, the answer is the 408
                if message["type"] == "http.response.start" and not answered:
                    answered = True
                    await _timeout_answer(send, timed_out[0])
                return
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not timed_out:
                raise
            if not answered:
                await _timeout_answer(send, timed_out[0])


async def _timeout_answer(send: Any, reason: str) -> None:
    log.warning("request body timed out", extra={"reason": reason})
    body = error_body(f"{reason}; send the whole request without pauses", code="request_timeout")
    await send_json(send, 408, body, [(b"connection", b"close")])
