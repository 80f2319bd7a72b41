"""The server as its own process: 50 concurrent requests, memory, temp files, JSON logs, graceful shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from test_server_support import SHORT_CLIP, ServerProcess, clip

httpx = pytest.importorskip("httpx")

CONCURRENT = 50


async def _fire(url: str, payload: bytes, n: int) -> list[tuple[int, dict[str, str], str]]:
    """``n`` transcription requests at once; each answer as (status, headers, body)."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one(i: int):
            response = await client.post(f"{url}/v1/audio/transcriptions", files={"file": (f"clip{i}.flac", payload)},
                                         data={"model": "tiny.en", "response_format": "json"})
            return response.status_code, dict(response.headers), response.text

        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.fixture(scope="module")
def process(tmp_path_factory):
    """One worker, a queue of two: most of a burst of 50 must be refused fast with 429."""
    tmp = tmp_path_factory.mktemp("server")
    uploads = tmp / "tmp"
    uploads.mkdir()
    server = ServerProcess("--workers", "1", "--max-queue", "2", "--beam-size", "None", "--best-of", "None",
                           tmpdir=tmp, env={"TMPDIR": str(uploads)})
    server.uploads = uploads
    try:
        server.wait_healthy()
        yield server
    finally:
        server.kill()


def test_fifty_concurrent_requests(process):
    payload = clip(SHORT_CLIP).read_bytes()
    for _ in range(3):  # warm up: the allocator and the model's caches reach their steady state
        assert httpx.post(f"{process.url}/v1/audio/transcriptions", files={"file": ("w.flac", payload)}, timeout=60).status_code == 200
    baseline = process.rss_mb()

    started = time.perf_counter()
    answers = asyncio.run(_fire(process.url, payload, CONCURRENT))
    elapsed = time.perf_counter() - started

    statuses = [status for status, _, _ in answers]
    assert len(answers) == CONCURRENT
    assert set(statuses) <= {200, 429}, statuses
    ok = [body for status, _, body in answers if status == 200]
    refused = [(headers, body) for status, headers, body in answers if status == 429]
    assert len(ok) >= 3, statuses  # at least the worker and the two queued got through
    assert refused, "a burst of 50 on one worker with a queue of 2 must refuse some"
    assert all("wait no longer" in body.lower() for body in ok), ok[:3]  # "He could wait no longer."
    for headers, body in refused:
        assert int(headers["retry-after"]) >= 1
        assert "busy" in body
    assert elapsed < 60

    health = httpx.get(f"{process.url}/health").json()
    assert health["status"] == "ok" and health["queue"]["admitted"] == 0
    # the spooled uploads are gone
    assert [p.name for p in process.uploads.iterdir() if p.name.startswith("tingxie-upload-")] == []
    # memory back to baseline: no per-request leak (a little allocator slack allowed)
    after = process.rss_mb()
    print(f"{len(ok)} answered 200, {len(refused)} answered 429 in {elapsed:.1f} s; RSS {baseline:.0f} MB -> {after:.0f} MB")
    assert after < baseline * 1.10 + 30, f"RSS grew from {baseline:.0f} MB to {after:.0f} MB"
    # and it still works
    assert httpx.post(f"{process.url}/v1/audio/transcriptions", files={"file": ("w.flac", payload)}, timeout=60).status_code == 200


def test_structured_logs_carry_the_request_id(process):
    response = httpx.post(f"{process.url}/v1/audio/transcriptions", files={"file": ("w.flac", clip(SHORT_CLIP).read_bytes())},
                          headers={"x-request-id": "trace-load-1"}, timeout=60)
    assert response.headers["x-request-id"] == "trace-load-1"
    time.sleep(0.2)
    entries = [e for e in process.log_entries() if e.get("request_id") == "trace-load-1"]
    messages = {e["message"] for e in entries}
    assert {"request", "transcribed"} <= messages, entries
    request = next(e for e in entries if e["message"] == "request")
    assert request["status"] == 200 and request["path"] == "/v1/audio/transcriptions" and request["duration_ms"] > 0
    assert {"ts", "level", "logger"} <= set(request)


def test_graceful_shutdown_finishes_in_flight_work(process):
    """SIGTERM while a transcription runs: it still gets its 200, then the server stops."""
    outcome = {}
    long_clip = clip("real_concat")

    def long_request():
        with open(long_clip, "rb") as f:
            outcome["response"] = httpx.post(f"{process.url}/v1/audio/transcriptions", files={"file": f}, timeout=120)

    worker = threading.Thread(target=long_request)
    worker.start()
    deadline = time.monotonic() + 30
    while httpx.get(f"{process.url}/health").json()["queue"]["admitted"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.terminate(timeout=120)
    worker.join(10)
    response = outcome["response"]
    assert response.status_code == 200
    assert "ask not what your country can do for you" in response.json()["text"]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{process.url}/health", timeout=2)
    assert "server stopped" in {e["message"] for e in process.log_entries()}


def test_a_model_that_cannot_load_stops_the_server(tmp_path):
    """``tingxie serve`` with a missing model exits with an error instead of answering 503 forever."""
    server = ServerProcess("--model", str(tmp_path / "no-such-model.pt"), tmpdir=tmp_path)
    try:
        status = server.proc.wait(120)
    finally:
        server.kill()
    assert status == 1
    errors = [e for e in server.log_entries() if e["level"] == "error"]
    assert any("could not be loaded" in e["message"] and "no-such-model.pt" in e["message"] for e in errors), server.log()
