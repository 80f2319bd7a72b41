"""Bad input gets the right 4xx with a clear message in the OpenAI error shape, through the official client."""

from __future__ import annotations

import threading
import time

import pytest
from test_server_support import SHORT_CLIP, clip, openai_client, running_servers, start_in_process

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
fastapi = pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def server(tiny_en):
    yield from running_servers(tiny_en)


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server.url)


def send(client, name: str, content: bytes, **kwargs):
    return client.audio.transcriptions.create(model="tiny.en", file=(name, content), **kwargs)


def check_error(error, status: int, code: str | None, *words: str) -> None:
    """The status, the OpenAI error body (message, type, param, code) and a message that says what is wrong."""
    assert error.status_code == status
    body = error.body
    assert set(body) == {"message", "type", "param", "code"}, body
    if code is not None:
        assert body["code"] == code
    for word in words:
        assert word.lower() in body["message"].lower(), body["message"]
    assert error.response.headers["x-request-id"]


def test_empty_file(client):
    with pytest.raises(openai.BadRequestError) as err:
        send(client, "empty.wav", b"")
    check_error(err.value, 400, "invalid_audio", "empty.wav", "empty")


def test_text_file(client):
    with pytest.raises(openai.BadRequestError) as err:
        send(client, "notes.txt", b"This is a shopping list, not a recording.\nmilk\neggs\n" * 20)
    check_error(err.value, 400, "invalid_audio", "notes.txt", "not audio")


def test_truncated_mp3(client):
    data = clip("comfyui_hotword").read_bytes()[:1500]
    with pytest.raises(openai.BadRequestError) as err:
        send(client, "cut.mp3", data)
    check_error(err.value, 400, "invalid_audio", "cut.mp3")
    assert "/tmp" not in err.value.message  # names the client's file, not the server's copy


def test_100_mb_upload(client):
    with pytest.raises(openai.APIStatusError) as err:
        send(client, "huge.wav", bytes(100 * 1024 * 1024))
    check_error(err.value, 413, "file_too_large", "too large", "25 MB")


def test_oversized_upload_without_length(tiny_en):
    """A chunked body that never states its length is cut off at the limit too."""
    server = start_in_process(tiny_en, max_upload_mb=1)
    try:
        boundary = "xyz"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'.encode()

        def body():
            yield head
            for _ in range(8):
                yield bytes(512 * 1024)
            yield f"\r\n--{boundary}--\r\n".encode()

        response = httpx.post(f"{server.url}/v1/audio/transcriptions", content=body(),
                              headers={"content-type": f"multipart/form-data; boundary={boundary}"}, timeout=60)
        assert response.status_code == 413
        assert "1 MB" in response.json()["error"]["message"]
    finally:
        server.stop()


def test_unknown_response_format(client):
    with pytest.raises(openai.BadRequestError) as err:
        send(client, "a.flac", clip(SHORT_CLIP).read_bytes(), response_format="docx")
    check_error(err.value, 400, None, "response_format", "docx")
    assert err.value.body["param"] == "response_format"


def test_unknown_language(client):
    with pytest.raises(openai.BadRequestError) as err:
        send(client, "a.flac", clip(SHORT_CLIP).read_bytes(), language="klingon")
    check_error(err.value, 400, None, "klingon")
    assert err.value.body["param"] == "language"


def test_language_an_english_model_cannot_do(client):
    with pytest.raises(openai.BadRequestError) as err:
        send(client, "a.flac", clip(SHORT_CLIP).read_bytes(), language="fr")
    check_error(err.value, 400, None, "English-only")


def test_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.audio.transcriptions.create(model="../../etc/passwd", file=("a.flac", clip(SHORT_CLIP).read_bytes()))
    check_error(err.value, 404, "model_not_found", "does not exist")


def test_temperature_out_of_range(client):
    with pytest.raises(openai.BadRequestError) as err:
        send(client, "a.flac", clip(SHORT_CLIP).read_bytes(), temperature=3)
    check_error(err.value, 400, None, "temperature")


def test_missing_file(server):
    response = httpx.post(f"{server.url}/v1/audio/transcriptions", data={"model": "tiny.en"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "'file' is required"


def test_unknown_route_and_method(server):
    assert httpx.get(f"{server.url}/v1/nothing").json()["error"]["code"] == "not_found"
    assert httpx.get(f"{server.url}/v1/audio/transcriptions").status_code == 405


def test_api_keys(tiny_en):
    server = start_in_process(tiny_en, api_keys=("sk-right", "sk-other"))
    try:
        with pytest.raises(openai.AuthenticationError) as err:
            openai_client(server.url, api_key="sk-wrong").models.list()
        check_error(err.value, 401, "invalid_api_key", "incorrect api key")
        missing = httpx.get(f"{server.url}/v1/models")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
        assert missing.headers["www-authenticate"] == "Bearer"
        with pytest.raises(openai.AuthenticationError):
            openai_client(server.url, api_key="sk-wrong").audio.transcriptions.create(
                model="tiny.en", file=("a.flac", clip(SHORT_CLIP).read_bytes()))
        right = openai_client(server.url, api_key="sk-other").audio.transcriptions.create(
            model="tiny.en", file=("a.flac", clip(SHORT_CLIP).read_bytes()))
        assert right.text
        # the page and the health check stay public, so a browser can ask for the key
        assert httpx.get(f"{server.url}/health").json()["auth_required"] is True
        assert httpx.get(f"{server.url}/").status_code == 200
    finally:
        server.stop()


def test_full_queue_answers_429_with_retry_after(tiny_en):
    """One worker, no queue: while a transcription runs, the next request is refused at once."""
    server = start_in_process(tiny_en, workers=1, max_queue=0)
    try:
        outcome = {}
        long_clip = clip("real_concat")

        def long_request():
            with open(long_clip, "rb") as f:
                outcome["first"] = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": f}, timeout=120)

        worker = threading.Thread(target=long_request)
        worker.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/health").json()["queue"]["admitted"] < 1:
            assert time.monotonic() < deadline, "the first request was never admitted"
            time.sleep(0.02)
        started = time.perf_counter()
        with pytest.raises(openai.RateLimitError) as err:
            openai_client(server.url).audio.transcriptions.create(model="tiny.en", file=("a.flac", clip(SHORT_CLIP).read_bytes()))
        assert time.perf_counter() - started < 2  # refused, not queued
        check_error(err.value, 429, "rate_limit_exceeded", "busy")
        assert int(err.value.response.headers["retry-after"]) >= 1
        worker.join(120)
        assert outcome["first"].status_code == 200
        assert httpx.get(f"{server.url}/health").json()["queue"]["admitted"] == 0
    finally:
        server.stop()


def test_job_queue_admission():
    """The admission counter itself: capacity = workers + max_queue, and slots come back."""
    from tingxie.server.errors import ApiError
    from tingxie.server.jobs import JobQueue

    queue = JobQueue(workers=2, max_queue=1)
    slots = [queue.admit() for _ in range(3)]
    with pytest.raises(ApiError) as err:
        queue.admit()
    assert err.value.status == 429 and int(err.value.headers["Retry-After"]) >= 1
    slots[0].close_unused()
    assert queue.admitted == 2
    queue.admit()
    queue.shutdown()


def test_route_modules_and_websockets_share_the_api_keys(monkeypatch):
    """A route module is one entry in ROUTE_MODULES; its WebSocket routes need the key too (header or ?api_key=)."""
    import sys
    import types

    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    import tingxie.server.app as server_app
    from tingxie.server.settings import ServerSettings

    router = fastapi.APIRouter()

    @router.websocket("/v1/echo")
    async def echo(websocket: fastapi.WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    module = types.ModuleType("routes_echo_for_test")
    module.router = router
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(server_app, "ROUTE_MODULES", (*server_app.ROUTE_MODULES, module.__name__))
    app = server_app.create_app(ServerSettings(api_keys=("sk-right",)), loader=lambda name: object())
    with TestClient(app) as client:
        with client.websocket_connect("/v1/echo", headers={"Authorization": "Bearer sk-right"}) as ws:
            assert ws.receive_text() == "hello"
        with client.websocket_connect("/v1/echo?api_key=sk-right") as ws:
            assert ws.receive_text() == "hello"
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/v1/echo?api_key=sk-wrong") as ws:
            ws.receive_text()
        assert refused.value.code == 1008 and "Incorrect API key" in refused.value.reason
        assert client.get("/v1/models").status_code == 401
