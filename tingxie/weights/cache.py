"""Where downloaded and assembled models are kept, and the file helpers that keep that folder sound.

The folder is ``$TINGXIE_CACHE`` if set, else ``$XDG_CACHE_HOME/tingxie``, else ``~/.cache/tingxie``.
Files only ever appear there whole: they are written beside their final name and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CACHE_ENV = "TINGXIE_CACHE"
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """The cache folder from the environment (not created)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tingxie"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir`` if given, else the default folder."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_writer(dest: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``dest`` only if the block ends without an error.

    The temporary file has a unique name beside ``dest`` (so concurrent writers never share one)
    and ends in ``.part``; it is removed on any failure.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{os.urandom(4).hex()}.part"
    # os.open with 0o666 lets the umask decide the final permissions, as for any other file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
