"""Errors as the OpenAI API shapes them: ``{"error": {"message", "type", "param", "code"}}`` with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..audio import AudioTooLongError
from ..errors import AudioDecodeError, CheckpointError, ModelNotFoundError, OptionError, TingxieError, UnknownLanguageError

log = logging.getLogger("tingxie.server")


class ApiError(Exception):
    """An error answered to the client: HTTP status plus the OpenAI error fields."""

    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
        code: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def from_core(error: TingxieError, *, param: str | None = None) -> ApiError:
    """The HTTP answer to an error the core raised because of the request."""
    if isinstance(error, ModelNotFoundError):
        return ApiError(404, str(error), param="model", code="model_not_found")
    if isinstance(error, CheckpointError):
        return ApiError(503, f"the model could not be loaded: {error}", type="server_error", param="model", code="model_unavailable")
    if isinstance(error, AudioTooLongError):
        return ApiError(413, f"{error} (this server's --max-audio-seconds)", param="file", code="audio_too_long")
    if isinstance(error, AudioDecodeError):
        return ApiError(400, str(error), param="file", code="invalid_audio")
    if isinstance(error, UnknownLanguageError):
        return ApiError(400, str(error), param=param or "language", code="unsupported_language")
    if isinstance(error, OptionError):
        return ApiError(400, str(error), param=param, code="invalid_value")
    return ApiError(400, str(error), param=param)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One readable sentence for the first invalid field, and that field's name."""
    errors = exc.errors()
    if not errors:
        return "the request is invalid", None
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = loc[0] if loc else None
    message = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return f"'{param}' is required", param
    given = first.get("input")
    shown = f" (got {given!r})" if isinstance(given, (str, int, float)) and len(repr(given)) < 80 else ""
    return (f"invalid '{param}': {message}{shown}" if param else message), param


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves the server in the OpenAI shape, 4xx for the client's mistakes, never a traceback."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(TingxieError)
    async def _core_error(request: Request, exc: TingxieError) -> JSONResponse:
        return error_response(from_core(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(ApiError(400, message, param=param, code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "the request could not be served"
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(ApiError(exc.status_code, message, type=kind, code=code, headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        log.exception("unhandled error", extra={"request_id": request_id})
        return error_response(ApiError(500, f"internal server error (request id {request_id})", type="server_error"))
