"""Fetch one file over HTTP(S) into the cache, verified by length and SHA-256 before it is used."""

from __future__ import annotations

import hashlib
import http.client
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from ..errors import DownloadError
from .cache import atomic_writer, sha256_file

_CHUNK = 1 << 20


def download(url: str, sha256: str, dest: Path, *, progress: bool = True, timeout: float = 30.0) -> Path:
    """``dest``, downloaded from ``url`` unless it is already there with the right SHA-256.

    The body is streamed to a ``.part`` file beside ``dest`` while it is hashed; only a complete
    transfer (as long as Content-Length says) with the expected checksum is renamed to ``dest``.
    A cached file with the wrong checksum is downloaded again. ``timeout`` bounds each network wait.
    Raises DownloadError (server unreachable, HTTP error, truncated transfer, checksum mismatch).
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.is_file():
        if sha256_file(dest) == sha256:
            return dest
        warnings.warn(f"{dest} does not match its SHA-256 checksum; downloading it again", stacklevel=2)
        # a corrupt copy is worthless, and must not survive a failed second attempt
        dest.unlink()
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "tingxie"}), timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadError(f"cannot download {url}: {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(f"cannot download {url}: {e}") from e
    with response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        _stream(response, url, sha256, dest, expected, progress)
    return dest


def _stream(response, url: str, sha256: str, dest: Path, expected: int | None, progress: bool) -> None:
    from tqdm import tqdm

    digest, received = hashlib.sha256(), 0
    bar = tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, file=sys.stderr, disable=not progress, leave=False)
    try:
        with atomic_writer(dest) as out:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except http.client.IncompleteRead as e:
                    # the server closed the connection before sending Content-Length bytes
                    received += len(e.partial)
                    raise DownloadError(f"truncated transfer from {url}: expected {expected} bytes, got {received}") from e
                except (OSError, http.client.HTTPException) as e:
                    raise DownloadError(f"download of {url} failed after {received} bytes: {e}") from e
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            if expected is not None and received != expected:
                raise DownloadError(f"truncated transfer from {url}: expected {expected} bytes, got {received}")
            got = digest.hexdigest()
            if got != sha256:
                raise DownloadError(f"checksum mismatch for {url}: expected {sha256} got {got}; nothing was kept, try again")
    finally:
        bar.close()
