"""Real-time transcription: audio chunks in, ``partial`` and ``final`` events out (``tingxie stream``, ``/v1/realtime``).

    >>> from tingxie.streaming import StreamingTranscriber, StreamOptions
    >>> stream = StreamingTranscriber(model, StreamOptions(language="en"))
    >>> for chunk in chunks:                  # 16 kHz mono float32
    ...     for event in stream.accept(chunk):
    ...         print(event.type, event.text)
    >>> stream.finish()                       # the last finals
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["AttentionCommit", "LocalAgreement", "StreamEvent", "StreamOptions", "StreamStats", "StreamingTranscriber", "TimedWord"]

# resolved on first use, so `tingxie --help` (which imports tingxie.streaming.cli) loads no numpy or torch
_LAZY = {
    "AttentionCommit": "alignatt",
    "LocalAgreement": "agreement",
    "StreamEvent": "events",
    "TimedWord": "events",
    "StreamOptions": "options",
    "StreamingTranscriber": "transcriber",
    "StreamStats": "transcriber",
}

if TYPE_CHECKING:
    from .agreement import LocalAgreement
    from .alignatt import AttentionCommit
    from .events import StreamEvent, TimedWord
    from .options import StreamOptions
    from .transcriber import StreamingTranscriber, StreamStats


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
