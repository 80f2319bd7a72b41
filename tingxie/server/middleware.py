"""ASGI middleware: a request id and an access log line for every request, and the upload size limit."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from .errors import error_body
from .logs import current_request_id

log = logging.getLogger("tingxie.server")

# An incoming X-Request-ID is kept only when it is short and plain, so it can't forge log lines.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Give each HTTP request an id (``x-request-id`` in and out) and log it once done, with status and time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        status = [500]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                extra={
                    "request_id": request_id, "method": scope["method"], "path": scope["path"], "status": status[0],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "client": (scope.get("client") or ("?",))[0],
                },
            )
            current_request_id.reset(token)


class _TooLarge(Exception):
    """Raised into the app's body read once the body passes the limit."""


async def _drain(receive: Any, cap: int) -> bool:
    """Read and discard the rest of the body (up to ``cap`` bytes) so the client can read our answer."""
    seen = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
        if seen > cap:
            return False


async def send_json(send: Any, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """Answer 413 to a request body over ``max_body`` bytes, whether it says its length up front or not.

    The rest of an oversized body is read and thrown away (up to ``drain_cap`` bytes, never stored) so that
    the client, which sends the whole body before reading, still gets the clear 413 instead of a reset.
    """

    def __init__(self, app: Any, max_body: int, limit_text: str, drain_cap: int | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.limit_text = limit_text
        self.drain_cap = drain_cap if drain_cap is not None else max(4 * max_body, 128 * 1024 * 1024)

    def _error(self) -> dict:
        return error_body(
            f"the upload is too large: this server accepts files up to {self.limit_text}", param="file", code="file_too_large"
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            if int(declared) <= self.drain_cap:
                await _drain(receive, self.drain_cap)
            await send_json(send, 413, self._error(), [(b"connection", b"close")])
            return

        received = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> dict:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal replaced
            # the app turns the aborted read into some error answer; say what really happened instead
            if exceeded:
                if message["type"] == "http.response.start" and not replaced:
                    replaced = True
                    await _drain(receive, self.drain_cap)
                    await send_json(send, 413, self._error(), [(b"connection", b"close")])
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            # whatever the aborted read turned into, the answer is the 413
            if not replaced:
                await _drain(receive, self.drain_cap)
                await send_json(send, 413, self._error(), [(b"connection", b"close")])
