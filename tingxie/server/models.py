"""The models the server serves: each loaded once, on first need, and shared by every request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..errors import TingxieError
from .errors import ApiError, from_core
from .settings import DEFAULT_MODEL_ALIASES, ServerSettings

log = logging.getLogger("tingxie.server")

Loader = Callable[[str], Any]
STREAM_SUFFIX = " (live streams)"  # the registry's key of a model loaded apart for streams


def default_loader(settings: ServerSettings) -> Loader:
    """Load by name with the server's device, dtype, compute type and cache folder (the core's ``load_model``)."""

    def load(name: str) -> Any:
        from ..api import load_model

        return load_model(name, device=settings.device, dtype=settings.dtype, cache_dir=settings.model_dir, compute_type=settings.compute_type)

    return load


def default_stream_loader(settings: ServerSettings) -> Loader:
    """Load by name for live streams: the fast engine, int8 on a CPU, whatever compute type files are transcribed with
    (a float32 stream with 5 beams runs at about real time on 2 cores, so its backlog grows)."""

    def load(name: str) -> Any:
        from ..api import load_model

        return load_model(name, device=settings.device, dtype=settings.dtype, cache_dir=settings.model_dir, compute_type="auto")

    return load


class ModelRegistry:
    """Name -> loaded model. Loads run one at a time on their own thread, so they never wait behind transcriptions."""

    def __init__(self, settings: ServerSettings, loader: Loader | None = None, stream_loader: Loader | None = None) -> None:
        self.settings = settings
        self._loader = loader or default_loader(settings)
        # a given loader (tests share one model) also serves streams; the server's own loads int8 for them
        self._stream_loader = stream_loader or (None if loader is not None or settings.compute_type in ("auto", "int8") else default_stream_loader(settings))
        self._futures: dict[str, Future] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tingxie-loader")

    @property
    def default(self) -> str:
        return self.settings.model

    def resolve(self, requested: str | None) -> str:
        """The served model a request's ``model`` names; 404 for anything else (a request can't load arbitrary files)."""
        if requested is None or requested == "" or requested in DEFAULT_MODEL_ALIASES:
            return self.default
        if requested in self.settings.model_names:
            return requested
        served = ", ".join((*self.settings.model_names, *DEFAULT_MODEL_ALIASES))
        raise ApiError(
            404, f"The model '{requested}' does not exist on this server; it serves: {served}.", param="model", code="model_not_found"
        )

    def start_loading(self, name: str) -> Future:
        """Begin loading ``name`` (once); the future holds the model or the load's error."""
        future = self._futures.get(name)
        if future is None:
            future = self._executor.submit(self._load, name)
            self._futures[name] = future
            if name == self.default and self._stream_loader is not None:
                # the live streams' model too, after it: a first stream that waited for its load would start seconds behind
                self.start_loading(name + STREAM_SUFFIX)
        return future

    def _load(self, name: str) -> Any:
        started = time.perf_counter()
        try:
            model = self._stream_loader(name[: -len(STREAM_SUFFIX)]) if name.endswith(STREAM_SUFFIX) else self._loader(name)
        except Exception:
            log.exception("model load failed", extra={"model": name})
            raise
        log.info("model loaded", extra={"model": name, "seconds": round(time.perf_counter() - started, 2)})
        return model

    async def get_streaming(self, name: str) -> Any:
        """The model live streams of ``name`` run: int8 on a CPU (loaded apart from the files' model where that differs)."""
        return await self.get(name if self._stream_loader is None else name + STREAM_SUFFIX)

    async def get(self, name: str) -> Any:
        """The loaded model, waiting for its load if needed; a failed load is an API error (until a restart)."""
        future = self.start_loading(name)
        try:
            return await asyncio.wrap_future(future)
        except TingxieError as e:
            raise from_core(e) from e
        except Exception as e:
            raise ApiError(503, f"the model '{name}' could not be loaded: {e}", type="server_error", param="model", code="model_unavailable") from e

    def status(self, name: str) -> str:
        """'ready', 'loading', 'failed: <reason>' or 'not loaded'."""
        future = self._futures.get(name)
        if future is None:
            return "not loaded"
        if not future.done():
            return "loading"
        error = future.exception()
        return "ready" if error is None else f"failed: {error}"

    def failed(self, name: str) -> bool:
        return self.status(name).startswith("failed")

    def loaded(self) -> list[str]:
        return [name for name in self._futures if self.status(name) == "ready"]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
