"""Helpers the server tests share: a live server on 127.0.0.1 (in-process or as its own process), clients, clips.

No tests here; the test_server_*.py modules import what they need.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, audio_path

if os.environ.get("CI"):
    import fastapi  # noqa: F401  - on CI the server tests must run, never skip
else:
    pytest.importorskip("fastapi", reason="the server extra is not installed (pip install -e '.[server]')")

SHORT_CLIP = "libri_1089-134691-0000"  # 2.1 s of read speech: the cheapest real request


def fast_settings(**overrides):
    """Greedy decoding (no beam search) keeps each request around a second on a small CPU."""
    from tingxie.server.settings import ServerSettings

    base = dict(host="127.0.0.1", port=0, model="tiny.en", beam_size=None, best_of=None, workers=1, max_queue=8)
    return ServerSettings(**{**base, **overrides})


def start_in_process(model, **overrides):
    """A real uvicorn server on a thread, serving the already-loaded ``model`` (the session's tiny.en)."""
    from tingxie.server.app import create_app
    from tingxie.server.runner import BackgroundServer

    settings = fast_settings(**overrides)
    server = BackgroundServer(create_app(settings, loader=lambda name: model), settings).start()
    wait_healthy(server.url)
    return server


def wait_healthy(url: str, timeout: float = 120.0) -> dict:
    """Poll /health until 200 (the default model is loaded)."""
    import httpx

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/health", timeout=5)
            if response.status_code == 200:
                return response.json()
            last = response.text
            if response.json().get("status") == "unavailable":
                break  # the model failed to load: no use waiting
        except httpx.TransportError as e:
            last = repr(e)
        time.sleep(0.1)
    raise AssertionError(f"the server at {url} never became healthy: {last}")


def openai_client(url: str, api_key: str = "unused", **kwargs):
    """The official client pointed at the server; no retries, so a 429 or 5xx shows as it is."""
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=120, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m tingxie.server`` as its own process, with its JSON log lines collected from stderr."""

    def __init__(self, *args: str, tmpdir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmpdir / "server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tingxie.server", "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", *args],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )

    def wait_healthy(self, timeout: float = 120.0) -> dict:
        try:
            return wait_healthy(self.url, timeout)
        except AssertionError:
            raise AssertionError(f"server did not start; its log:\n{self.log()}") from None

    def rss_mb(self) -> float:
        """Resident memory of the server process, from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_entries(self) -> list[dict]:
        entries = []
        for line in self.log().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return entries

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful) and wait; the exit code (uvicorn re-raises the signal once done: -15 is clean too)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def clip(name: str) -> Path:
    return audio_path(name)


def running_servers(model) -> Iterator:
    """A generator fixture body: one in-process server for a module, stopped at the end."""
    server = start_in_process(model)
    try:
        yield server
    finally:
        server.stop()
