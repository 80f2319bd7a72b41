"""The server probed as an attacker on 127.0.0.1 (issue 24): duration bombs, clients that leave, keys in logs,
slow clients, too many connections, foreign WebSocket origins, practice uploads past 30 s, SIGTERM mid-job.

Each attack is one test with bounded loops; statuses, log lines and the server's peak memory (VmHWM from
/proc/<pid>/status) are asserted, never how long an answer took.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
import wave
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest
from test_server_support import (
    SHORT_CLIP,
    ServerProcess,
    clip,
    fast_settings,
    wait_healthy,
)

httpx = pytest.importorskip("httpx")

API_KEY = "k3y-s3cret-24"
PEAK_RSS_MB = 1536  # the bound for tiny.en: 1.5 GB


# ------------------------------------------------------------------------------------------------ crafted audio


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def flac_bytes(samples: np.ndarray, rate: int, declared_samples: int | None = None) -> bytes:
    """FLAC of int16 ``samples``; ``declared_samples`` overwrites STREAMINFO's total (a header that lies)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    data = bytearray(buf.getvalue())
    if declared_samples is not None:
        fields = int.from_bytes(data[18:26], "big")  # STREAMINFO: rate (20 bits), channels (3), bits (5), total samples (36)
        data[18:26] = ((fields >> 36 << 36) | declared_samples).to_bytes(8, "big")
    return bytes(data)


def one_hz_wav_bomb() -> bytes:
    """200 KB whose header says 1 Hz: 100,000 samples that decode to 27.8 h at 16 kHz."""
    return wav_bytes(np.zeros(100_000, np.int16), 1)


def ten_hour_silent_flac() -> bytes:
    """Ten hours of silence in a few KB (1 Hz FLAC: its STREAMINFO says 10 h, truthfully)."""
    return flac_bytes(np.zeros(36_000, np.int16), 1)


def lying_flac_bomb() -> bytes:
    """27.8 h of silence whose header declares 1 s: only decoding finds out, and must stop at the limit."""
    return flac_bytes(np.zeros(100_000, np.int16), 1, declared_samples=1)


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory) -> Path:
    """Ten minutes of real speech (real_concat tiled) as FLAC: 20 windows, more work than any test waits for."""
    from tingxie.audio import decode_audio

    speech = decode_audio(clip("real_concat"))
    tiled = np.tile((speech * 32767).astype(np.int16), int(np.ceil(10 * 60 * 16000 / speech.size)))[: 10 * 60 * 16000]
    path = tmp_path_factory.mktemp("long") / "ten_minutes.flac"
    path.write_bytes(flac_bytes(tiled, 16000))
    return path


def post_audio(url: str, data: bytes, name: str = "a.flac", *, key: str | None = None, timeout: float = 120, **fields) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/audio/transcriptions", files={"file": (name, data)}, data=fields, headers=headers, timeout=timeout)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# ------------------------------------------------------------------------------------------------ the server as users run it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``tingxie serve`` with its default limits, an API key, greedy decoding; SIGTERM's grace cut to 2 s for the last test."""
    tmp = tmp_path_factory.mktemp("security")
    server = ServerProcess("--api-key", API_KEY, "--beam-size", "None", "--best-of", "None", "--shutdown-timeout", "2", tmpdir=tmp)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.kill()


def health_while(server: ServerProcess, work: threading.Thread) -> list[int]:
    """Poll /health while ``work`` runs (bounded: at most 600 polls); the statuses seen."""
    statuses = []
    for _ in range(600):
        if not work.is_alive():
            break
        statuses.append(httpx.get(f"{server.url}/health", timeout=30).status_code)
        time.sleep(0.05)
    work.join(300)
    return statuses


@pytest.mark.parametrize(
    "name,make,message",
    [
        ("bomb.wav", one_hz_wav_bomb, "27.7778 h long (as its header declares), over the limit of 3 h"),
        ("silence.flac", ten_hour_silent_flac, "10 h long (as its header declares), over the limit of 3 h"),
        ("liar.flac", lying_flac_bomb, "longer than the limit of 3 h (decoding stopped there)"),
    ],
)
def test_duration_bombs_get_413_in_bounded_memory(served, name, make, message):
    answer = {}
    work = threading.Thread(target=lambda: answer.setdefault("r", post_audio(served.url, make(), name, key=API_KEY)))
    work.start()
    statuses = health_while(served, work)
    response = answer["r"]
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "audio_too_long" and error["param"] == "file"
    assert message in error["message"] and name in error["message"] and "/tmp" not in error["message"]
    assert statuses and set(statuses) == {200}  # /health kept answering while the bomb was decoded
    peak = peak_rss_mb(served.proc.pid)
    print(f"{name}: 413 after {len(statuses)} /health polls; server peak RSS {peak:.0f} MB")
    assert peak < PEAK_RSS_MB
    ok = post_audio(served.url, clip(SHORT_CLIP).read_bytes(), key=API_KEY)  # and the next client is served normally
    assert ok.status_code == 200 and "wait no longer" in ok.json()["text"].lower()


@pytest.mark.parametrize("make", [ten_hour_silent_flac, lying_flac_bomb])
def test_practice_stops_decoding_at_30_seconds(served, make):
    response = httpx.post(f"{served.url}/v1/practice", files={"file": ("p.flac", make())}, data={"text": "hello there"},
                          headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)
    assert response.status_code == 400, response.text
    assert "practice takes up to 30 s of speech" in response.json()["error"]["message"]
    assert peak_rss_mb(served.proc.pid) < PEAK_RSS_MB


def test_keys_never_reach_the_log(served):
    from websockets.sync.client import connect

    ws_url = served.url.replace("http://", "ws://")
    with connect(f"{ws_url}/v1/realtime?api_key={API_KEY}&language=en") as ws:
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    httpx.get(f"{served.url}/v1/models?api_key={API_KEY}", timeout=30)  # a key in a query string, on plain HTTP
    httpx.get(f"{served.url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    for _ in range(100):  # the log lines land once the socket is closed
        if "WebSocket" in served.log():
            break
        time.sleep(0.05)
    log = served.log()
    assert "WebSocket /v1/realtime?[redacted]" in log
    assert API_KEY not in log


def test_sigterm_cancels_running_work_after_the_grace_period(served, long_speech):
    """Last in the module: it stops the server. A ten-minute job is under way; SIGTERM ends it at a window."""
    started = threading.Thread(target=lambda: _ignore(lambda: post_audio(served.url, long_speech.read_bytes(), key=API_KEY)))
    started.start()
    for _ in range(600):
        if httpx.get(f"{served.url}/health", timeout=30).json()["queue"]["admitted"] == 1:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the job never started")
    time.sleep(1.0)  # into its first windows
    status = served.terminate(timeout=120)
    started.join(120)
    assert status in (0, -15)
    messages = [e["message"] for e in served.log_entries()]
    assert "cancelled running work" in messages and "server stopped" in messages
    assert any(e.get("reason") == "shutting_down" for e in served.log_entries() if e["message"] == "transcription cancelled")


def _ignore(fn) -> None:
    try:
        fn()
    except httpx.TransportError:
        pass  # the server went away under the request: expected here


# ------------------------------------------------------------------------------------------------ in process, with small limits


@contextmanager
def in_process(model, **overrides):
    """A server on a thread serving ``model``, with ``overrides`` of the test settings."""
    from tingxie.server.app import create_app
    from tingxie.server.runner import BackgroundServer

    settings = fast_settings(**overrides)
    with BackgroundServer(create_app(settings, loader=lambda name: model), settings) as server:
        wait_healthy(server.url)
        yield server


@pytest.fixture(scope="module")
def small_limits(tiny_en_default):
    """The server with the model users get and limits small enough to reach: 60 s of audio, 1-s reads, 4 connections."""
    with in_process(tiny_en_default, max_audio_seconds=60.0, read_timeout=1.0, max_connections=4) as server:
        yield server


@pytest.mark.parametrize("stream", ["false", "true"])
def test_a_lying_header_is_caught_at_the_servers_limit(small_limits, stream):
    liar = flac_bytes(np.zeros(16000 * 90, np.int16), 16000, declared_samples=16000)  # says 1 s, holds 90 s
    response = post_audio(small_limits.url, liar, "liar.flac", stream=stream)  # a stream too is refused before it starts
    assert response.status_code == 413, response.text
    assert "longer than the limit of 1 min (decoding stopped there)" in response.json()["error"]["message"]
    assert post_audio(small_limits.url, clip(SHORT_CLIP).read_bytes()).status_code == 200


def test_a_client_that_leaves_frees_its_worker(tiny_en_default, long_speech, caplog):
    caplog.set_level(logging.INFO, logger="tingxie.server")
    with in_process(tiny_en_default) as server:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up after 3 s and closes its connection
            post_audio(server.url, long_speech.read_bytes(), "long.flac", timeout=httpx.Timeout(60, read=3))
        for _ in range(600):  # bounded: the worker is freed at its next window
            if httpx.get(f"{server.url}/health", timeout=30).json()["queue"]["admitted"] == 0:
                break
            time.sleep(0.1)
        cancelled = [r for r in caplog.records if r.getMessage() == "transcription cancelled"]
        assert [r.reason for r in cancelled] == ["client_disconnected"]
        assert httpx.get(f"{server.url}/health", timeout=30).json()["queue"]["admitted"] == 0
        assert post_audio(server.url, clip(SHORT_CLIP).read_bytes()).status_code == 200


def test_a_request_past_its_time_limit_is_stopped(tiny_en_default, long_speech):
    with in_process(tiny_en_default, max_request_seconds=2.0) as server:
        response = post_audio(server.url, long_speech.read_bytes(), "long.flac")
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        assert error["code"] == "request_timeout" and "limit of 2 s" in error["message"]
        assert httpx.get(f"{server.url}/health", timeout=30).json()["queue"]["admitted"] == 0


def raw_exchange(url: str, payload: bytes, *, wait: float = 30.0) -> bytes:
    """Send ``payload`` on a fresh connection, then read until the server closes it (bounded by ``wait``)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_a_slow_request_head_is_cut_off(small_limits):
    answer = raw_exchange(small_limits.url, b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert answer.startswith(b"HTTP/1.1 408")


def test_a_stalled_body_gets_408(small_limits):
    head = b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
    answer = raw_exchange(small_limits.url, head + b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF")
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"stalled for over 1 s" in answer


def test_an_oversized_request_head_gets_400(small_limits):
    """A head still incomplete past 16 KB (h11's limit) is refused at once, not buffered as it grows."""
    answer = raw_exchange(small_limits.url, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000)
    assert answer.startswith(b"HTTP/1.1 400")


def test_connections_past_the_limit_get_503(small_limits):
    host, port = small_limits.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(4)]
    try:
        time.sleep(0.2)  # let the server register them
        assert httpx.get(f"{small_limits.url}/health", timeout=30).status_code == 503
    finally:
        for sock in idle:
            sock.close()
    for _ in range(100):  # bounded: the server notices the closed sockets
        if httpx.get(f"{small_limits.url}/health", timeout=30).status_code == 200:
            break
        time.sleep(0.05)
    assert httpx.get(f"{small_limits.url}/health", timeout=30).status_code == 200


def test_websockets_from_other_sites_are_refused(small_limits):
    """A page on another origin can't drive the local server; its own page and non-browser clients can."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = small_limits.url.replace("http://", "ws://") + "/v1/realtime?language=en"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin="https://evil.example", open_timeout=30)
    assert refused.value.response.status_code == 403
    for origin in (small_limits.url, None):  # the server's own page, then a client that is not a browser
        with connect(url, origin=origin, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))


# ------------------------------------------------------------------------------------------------ parts


def test_origin_check() -> None:
    from tingxie.server.origins import origin_problem

    def headers(**h: str) -> list[tuple[bytes, bytes]]:
        return [(k.replace("_", "-").encode(), v.encode()) for k, v in h.items()]

    assert origin_problem(headers(host="127.0.0.1:8000"), ()) is None  # not a browser
    assert origin_problem(headers(host="127.0.0.1:8000", origin="http://127.0.0.1:8000"), ()) is None  # the server's own page
    assert origin_problem(headers(host="example.org", origin="https://example.org:443"), ()) is None
    problem = origin_problem(headers(host="127.0.0.1:8000", origin="https://evil.example"), ())
    assert problem is not None and "'https://evil.example' may not open" in problem and "--allowed-origins" in problem
    assert origin_problem(headers(host="127.0.0.1:8000", origin="http://localhost:8000"), ()) is not None  # another origin
    assert origin_problem(headers(host="127.0.0.1:8000", origin="https://App.Example/"), ("https://app.example",)) is None
    assert origin_problem(headers(host="127.0.0.1:8000", origin="https://evil.example"), ("*",)) is None


def test_redaction() -> None:
    from tingxie.server.logs import RedactFilter, redact

    assert redact('127.0.0.1:5 - "WebSocket /v1/realtime?api_key=abc&x=1" [accepted]') == '127.0.0.1:5 - "WebSocket /v1/realtime?[redacted]" [accepted]'
    assert redact("key abc in a message", ["abc"]) == "key [redacted] in a message"
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" [accepted]', ("1.2.3.4:5", "/v1/realtime?api_key=abc"), None)
    record.path = "/x?token=abc"
    assert RedactFilter(["abc"]).filter(record)
    assert record.getMessage() == '1.2.3.4:5 - "WebSocket /v1/realtime?[redacted]" [accepted]' and record.path == "/x?[redacted]"


def test_limits_reach_uvicorn_with_their_defaults() -> None:
    import argparse

    from tingxie.server.cli import add_serve_parser, settings_from_args
    from tingxie.server.runner import _config

    parser = argparse.ArgumentParser()
    settings = settings_from_args(add_serve_parser(parser.add_subparsers()).parse_args([]))
    assert (settings.max_audio_seconds, settings.max_request_seconds, settings.shutdown_timeout) == (10800.0, 3600.0, 20.0)
    assert (settings.read_timeout, settings.upload_timeout, settings.allowed_origins) == (10.0, 300.0, ())
    config = _config(object(), settings, install_logging=False)
    assert (config.timeout_keep_alive, config.limit_concurrency, config.h11_max_incomplete_event_size) == (5.0, 64, 16384)
    assert config.timeout_graceful_shutdown == 20.0 and config.http.__name__ == "GuardedH11Protocol"


# ------------------------------------------------------------------------------------------------ one decode per job


class _RecordingModel:
    """What the service hands the core: the audio it passes, and where the work runs."""

    def __init__(self) -> None:
        self.audio: list = []

    def iter_transcribe(self, audio, options, on_progress=None):
        self.audio.append(audio)
        return object(), iter(())

    def assemble(self, info, segments):
        from types import SimpleNamespace

        return SimpleNamespace(duration=2.0, segments=[])


@pytest.mark.parametrize("speakers", [None, ((), ())])
def test_a_job_decodes_its_upload_once_inside_its_slot(tmp_path, monkeypatch, speakers):
    """The upload goes to the core as a stream bounded by the server's limit (a plain transcription) or as samples
    decoded once, shared with the speaker turns, which are found on the worker inside the job's slot (diarized_json)."""
    import asyncio

    from tingxie import mel_source
    from tingxie.options import build_options
    from tingxie.server import service
    from tingxie.server.jobs import JobQueue

    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes((np.sin(np.arange(16000 * 2) / 5) * 8000).astype(np.int16), 16000))
    decodes, diarized = [], []
    real_decode = mel_source.decode_audio
    monkeypatch.setattr(mel_source, "decode_audio", lambda *a, **k: decodes.append(k) or real_decode(*a, **k))

    class _Speakers:  # records where the speaker work starts; its apply hands the transcription back
        def __init__(self, job, samples):
            diarized.append((threading.current_thread().name, samples))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def apply(self, model, result):
            return result

    monkeypatch.setattr(service, "start_speakers", _Speakers)
    model = _RecordingModel()
    queue = JobQueue(workers=1, max_queue=0)
    job = service.Job(model=model, model_name="m", audio=path, filename="a.wav", options=build_options(diarize=speakers is not None),
                      task="transcribe", max_audio_seconds=60.0, speakers=speakers)

    async def run():
        slot = queue.admit()
        try:
            return await service.transcribe(slot, job)
        finally:
            slot.close_unused()

    try:
        assert asyncio.run(run()).duration == 2.0
    finally:
        queue.shutdown()
    [audio] = model.audio
    if speakers is None:
        assert isinstance(audio, mel_source.AudioFile) and audio.max_seconds == 60.0 and audio.interrupt is not None and not decodes
        assert not diarized
    else:
        assert isinstance(audio, np.ndarray) and audio.size == 32000 and len(decodes) == 1 and decodes[0]["max_seconds"] == 60.0
        [(thread, samples)] = diarized
        assert thread.startswith("tingxie-worker") and samples is audio
