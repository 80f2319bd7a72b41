"""tingxie (听写): speech recognition with the official Whisper weights in plain PyTorch.

    >>> import tingxie
    >>> model = tingxie.load_model("tiny.en")
    >>> result = model.transcribe("speech.flac", word_timestamps=True)
    >>> result.text
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load_model", "WhisperModel", "TranscribeOptions", "DecodingOptions", "TranscriptionResult", "Segment", "Word", "__version__"]

_LAZY = {
    "load_model": "tingxie.api",
    "WhisperModel": "tingxie.api",
    "TranscribeOptions": "tingxie.options",
    "DecodingOptions": "tingxie.options",
    "TranscriptionResult": "tingxie.results",
    "Segment": "tingxie.results",
    "Word": "tingxie.results",
}

if TYPE_CHECKING:
    from .api import WhisperModel, load_model
    from .options import DecodingOptions, TranscribeOptions
    from .results import Segment, TranscriptionResult, Word


def __getattr__(name: str) -> Any:
    # torch is imported only when a model is actually asked for, so `tingxie --help` stays fast
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tingxie' has no attribute {name!r}")
