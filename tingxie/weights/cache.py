"""Where downloaded and assembled models are kept, and the file helpers that keep that folder sound.

The folder is ``$TINGXIE_CACHE`` if set, else ``$XDG_CACHE_HOME/tingxie``, else ``~/.cache/tingxie``.
Files only ever appear there whole: they are written beside their final name and renamed into place.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import CheckpointError

CACHE_ENV = "TINGXIE_CACHE"
_CHUNK = 1 << 20

# errors that say the disk, not the data, is the problem: what a user fixes by freeing space or choosing a folder
_DISK_CAUSES = {
    errno.ENOSPC: "the disk is full (no space left on device)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "the file is too large for this file system",
}


class CacheWriteError(CheckpointError):
    """The model cache could not be written (full or read-only disk, no permission); the message names the path."""


def is_disk_error(error: BaseException) -> bool:
    """True for an OSError caused by the disk or folder written to (full, read-only, not permitted)."""
    return isinstance(error, OSError) and error.errno in _DISK_CAUSES


def describe_write_error(error: OSError) -> str:
    """The cause of a failed write in words (for a one-line message that also names the path)."""
    return _DISK_CAUSES.get(error.errno) or (error.strerror or str(error)).lower()


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
    and ends in ``.part``; it is removed on any failure. A full or read-only disk (here or in the
    block's writes) is a :class:`CacheWriteError` naming ``dest`` and the cause.
    """
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{os.urandom(4).hex()}.part"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # os.open with 0o666 lets the umask decide the final permissions, as for any other file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        raise _cache_write_error(e, dest) from e
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        # a write into this file (no other file named) failed for want of space or permission
        if is_disk_error(e) and e.filename in (None, str(tmp), str(dest)):
            raise _cache_write_error(e, dest) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _cache_write_error(error: OSError, dest: Path) -> CacheWriteError:
    return CacheWriteError(f"cannot write {dest}: {describe_write_error(error)} (set TINGXIE_CACHE or --model_dir to a writable folder with space)")


def write_folder_atomically(target: Path, fill: Callable[[Path], None], marker: str) -> None:
    """Build the folder ``target``: ``fill(work)`` writes it in a temporary folder beside it, which is then renamed into
    place; where another process made it first (its ``marker`` file exists), that folder is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(work)
        try:
            os.replace(work, target)
        except OSError:
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
