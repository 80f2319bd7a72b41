"""``create_app(settings)``: the FastAPI application, with its models, queue, middleware and routes."""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from .. import __version__
from .auth import require_api_key
from .errors import install_error_handlers
from .jobs import JobQueue
from .limits import ReadTimeoutMiddleware
from .middleware import BodyLimitMiddleware, RequestContextMiddleware
from .models import Loader, ModelRegistry
from .schemas import ErrorResponse, TranscriptionJson, TranscriptionVerbose
from .settings import DEFAULT_MODEL_ALIASES, ServerSettings
from .uploads import format_size

log = logging.getLogger("tingxie.server")

STATIC = Path(__file__).with_name("static")
# room for the multipart framing and the small form fields around the file
FORM_OVERHEAD = 1024 * 1024

# The route modules. Each defines ``router`` (an APIRouter whose HTTP and WebSocket routes need an API key when
# the server has keys; see auth.py) and may define ``public`` (routes open to everyone: pages, /health).
# Adding a module is one line here.
ROUTE_MODULES = (
    "tingxie.server.routes_audio",
    "tingxie.server.routes_meta",
    "tingxie.server.routes_practice",
    "tingxie.server.routes_realtime",
)


def create_app(settings: ServerSettings | None = None, *, loader: Loader | None = None) -> FastAPI:
    """The application. ``loader(name) -> model`` replaces ``tingxie.load_model`` (tests share a loaded model)."""
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.models.start_loading(settings.model)  # in the background: /health says 503 until it is ready
        log.info("server starting", extra={"model": settings.model, "workers": settings.workers, "max_queue": settings.max_queue,
                                           "auth": settings.auth_required, "max_upload_mb": settings.max_upload_mb,
                                           "max_audio_seconds": settings.max_audio_seconds, "max_request_seconds": settings.max_request_seconds})
        try:
            yield
        finally:
            # uvicorn has already waited its grace period for in-flight requests: stop what still runs at its next window
            cancelled = app.state.jobs.cancel_all()
            if cancelled:
                log.info("cancelled running work", extra={"jobs": cancelled})
            await asyncio.to_thread(app.state.jobs.shutdown, True)
            app.state.models.close()
            log.info("server stopped")

    app = FastAPI(
        title="tingxie",
        version=__version__,
        description="Speech recognition with the Whisper weights, behind the OpenAI audio API (transcriptions, translations).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.started = time.time()
    app.state.models = ModelRegistry(settings, loader)
    app.state.jobs = JobQueue(settings.workers, settings.max_queue, settings.max_request_seconds)

    install_error_handlers(app)
    # /v1 asks for a key only where the server has keys, and its schema says so only then
    guarded = [Depends(require_api_key)] if settings.auth_required else []
    for module_name in ROUTE_MODULES:
        module = importlib.import_module(module_name)
        if getattr(module, "router", None) is not None:
            app.include_router(module.router, dependencies=guarded)
        if getattr(module, "public", None) is not None:
            app.include_router(module.public)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # the last added runs first: every answer, even a 413, carries a request id and is logged
    app.add_middleware(BodyLimitMiddleware, max_body=settings.max_upload_bytes + FORM_OVERHEAD, limit_text=format_size(settings.max_upload_bytes))
    app.add_middleware(ReadTimeoutMiddleware, read_timeout=settings.read_timeout, upload_timeout=settings.upload_timeout)
    app.add_middleware(RequestContextMiddleware)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with our 400 in place of its 422 and the response bodies the handlers build."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    _, defs = models_json_schema(
        [(m, "serialization") for m in (TranscriptionJson, TranscriptionVerbose, ErrorResponse)], ref_template="#/components/schemas/{model}"
    )
    components.update(defs.get("$defs", {}))
    # say which model names this server takes (any other is a 404), so clients and fuzzers can pick a real one
    served = [*app.state.settings.model_names, *DEFAULT_MODEL_ALIASES]
    for name, body in components.items():
        if name.startswith("Body_"):  # the multipart forms
            for field, prop in body.get("properties", {}).items():
                _form_field(prop)
                if field == "model":
                    prop["enum"] = served
    app.openapi_schema = schema
    return schema


def _form_field(prop: dict[str, Any]) -> None:
    """A multipart field is sent or left out, never null: drop pydantic's ``anyOf [..., null]`` for optional fields."""
    options = [option for option in prop.get("anyOf", ()) if option.get("type") != "null"]
    if "anyOf" in prop and len(options) == 1:
        del prop["anyOf"]
        prop.update(options[0])
    if "default" in prop and prop["default"] is None:
        del prop["default"]
