"""Uploaded audio goes to a temporary file on disk, chunk by chunk, never whole into memory."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from .errors import ApiError

_CHUNK = 1024 * 1024
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def display_name(filename: str | None) -> str:
    """The client's file name, fit for a message: no folders, no control characters, not too long."""
    name = os.path.basename((filename or "").replace("\\", "/"))
    name = "".join(ch for ch in name if ch.isprintable())[:100]
    return name or "the uploaded file"


def save_upload(source: BinaryIO, filename: str | None, limit: int, folder: str | None = None) -> Path:
    """Copy an upload to a new temporary file and return its path; 413 past ``limit`` bytes.

    The suffix of the client's name is kept (when plain), as a hint for ffmpeg's format probing.
    """
    suffix = Path(filename or "").suffix
    fd, name = tempfile.mkstemp(prefix="tingxie-upload-", suffix=suffix if _SAFE_SUFFIX.match(suffix) else "", dir=folder)
    path = Path(name)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise ApiError(
                        413, f"the upload is too large: this server accepts files up to {format_size(limit)}",
                        param="file", code="file_too_large",
                    )
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def format_size(size: int) -> str:
    megabytes = size / (1024 * 1024)
    return f"{megabytes:g} MB" if megabytes >= 1 else f"{size // 1024} KB"
