"""Running the app under uvicorn: in the foreground (``tingxie serve``) or on a background thread (tests, notebooks)."""

from __future__ import annotations

import threading
import time
from typing import Any

from .settings import ServerSettings


def _config(app: Any, settings: ServerSettings, *, install_logging: bool) -> Any:
    import uvicorn

    from .limits import guarded_h11_protocol
    from .logs import logging_config

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=logging_config(settings.log_level, settings.api_keys) if install_logging else None,
        access_log=False,  # our middleware logs each request once, with its id
        # on SIGTERM/SIGINT: stop accepting, let in-flight transcriptions finish (up to this long), then cancel their work
        timeout_graceful_shutdown=settings.shutdown_timeout,
        server_header=False,
        http=guarded_h11_protocol(settings.read_timeout),  # h11 with a deadline for each request head
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )


def run(settings: ServerSettings, *, loader: Any = None) -> int:
    """Serve until interrupted; returns the exit status. Ctrl-C or SIGTERM shut down gracefully.

    If the default model can't be loaded the server stops at once (status 1) rather than answering 503 forever.
    """
    import logging

    import uvicorn

    from .app import create_app

    app = create_app(settings, loader=loader)

    class Server(uvicorn.Server):
        async def on_tick(self, counter: int) -> bool:
            if app.state.models.failed(settings.model):
                self.should_exit = True
            return await super().on_tick(counter)

    server = Server(_config(app, settings, install_logging=True))
    server.run()
    if app.state.models.failed(settings.model):
        logging.getLogger("tingxie.server").error(
            f"the default model {settings.model!r} could not be loaded: {app.state.models.status(settings.model)[len('failed: '):]}"
        )
        return 1
    return 0 if server.started else 1


class BackgroundServer:
    """The app served by uvicorn on a thread; ``url`` is known once started (port 0 picks a free port).

        with BackgroundServer(create_app(settings)) as server:
            httpx.get(server.url + "/health")
    """

    def __init__(self, app: Any, settings: ServerSettings | None = None, *, install_logging: bool = False) -> None:
        import uvicorn

        settings = settings or app.state.settings
        # off the main thread uvicorn installs no signal handlers; the owner stops the server with stop()
        self.server = uvicorn.Server(_config(app, settings, install_logging=install_logging))
        self._thread = threading.Thread(target=self.server.run, name="tingxie-server", daemon=True)
        self.url = ""

    def start(self, timeout: float = 60.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
