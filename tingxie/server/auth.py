"""Optional Bearer API keys: with keys configured, every /v1 call (HTTP or WebSocket) must carry one of them."""

from __future__ import annotations

import hmac

from fastapi import Depends, WebSocketException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from .errors import ApiError

# auto_error=False: we answer 401 ourselves, in the OpenAI shape (FastAPI's own would be a 403 with "detail").
_bearer = HTTPBearer(auto_error=False, description="An API key given to `tingxie serve --api-key` (only when the server has keys)")

# Browsers can't set headers on a WebSocket, so there the key may also come as ``?api_key=KEY``.
WEBSOCKET_KEY_PARAM = "api_key"


def key_matches(token: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every key, so timing tells nothing about how close a guess was."""
    given = token.encode()
    return any(hmac.compare_digest(given, key.encode()) for key in keys)  # no short-circuit on a near miss


def key_error(token: str | None, keys: tuple[str, ...]) -> ApiError | None:
    """Why ``token`` is refused (a 401 ApiError), or None when it is accepted or the server has no keys."""
    if not keys:
        return None
    challenge = {"WWW-Authenticate": "Bearer"}
    if not token:
        return ApiError(
            401, "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'.",
            code="missing_api_key", headers=challenge,
        )
    if not key_matches(token, keys):
        return ApiError(401, "Incorrect API key provided.", code="invalid_api_key", headers=challenge)
    return None


def require_api_key(connection: HTTPConnection, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """A FastAPI dependency for HTTP and WebSocket routes: refused unless the server has no keys or a valid one is given.

    HTTP gets a 401 in the OpenAI shape; a WebSocket is closed with code 1008 (policy violation) and the message.
    """
    keys: tuple[str, ...] = connection.app.state.settings.api_keys
    token = credentials.credentials if credentials is not None else None
    websocket = connection.scope["type"] == "websocket"
    if websocket and not token:
        token = connection.query_params.get(WEBSOCKET_KEY_PARAM)
    error = key_error(token, keys)
    if error is None:
        return
    if websocket:
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=error.message)
    raise error
