"""``tingxie serve``: an OpenAI-compatible transcription server with a web page (FastAPI + uvicorn).

An edge of the package: it imports the core, the core never imports it. ``fastapi`` and ``uvicorn``
are imported only when the app is built or run, so ``tingxie --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app", "ServerSettings", "run"]

if TYPE_CHECKING:
    from .app import create_app
    from .runner import run
    from .settings import ServerSettings

_LAZY = {"create_app": "tingxie.server.app", "run": "tingxie.server.runner", "ServerSettings": "tingxie.server.settings"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tingxie.server' has no attribute {name!r}")
