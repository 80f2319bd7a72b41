"""Structured logs: one JSON object per line on stderr, each tagged with the request it belongs to."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

# The id of the request being served in this task (a context variable: each request sees its own).
current_request_id: ContextVar[str | None] = ContextVar("tingxie_request_id", default=None)

# LogRecord attributes that are not user-supplied extras.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


# A query string in a logged request target ("GET /v1/realtime?api_key=... HTTP/1.1"): it may carry a key.
_QUERY = re.compile(r"\?[^\s\"']+")
REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without query strings and without any of ``secrets`` (the server's API keys)."""
    text = _QUERY.sub("?" + REDACTED, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class RedactFilter(logging.Filter):
    """Rewrite every record that passes (uvicorn's included) so no query string or API key reaches the log."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value, self.secrets))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", ...extras}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(level: str = "info", secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server and uvicorn, all in JSON, with query strings and ``secrets`` redacted."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"redact": {"()": RedactFilter, "secrets": tuple(secrets)}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr", "filters": ["redact"]},
        },
        "loggers": {
            "tingxie.server": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # our middleware logs every request with its id; uvicorn's own access log would duplicate it
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
