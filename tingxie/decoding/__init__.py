"""Decoding of 30-s windows composed from small parts: logit filters, token selectors, a ranker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .window import DecodingResult, compression_ratio

__all__ = ["DecodingResult", "compression_ratio", "decode", "decode_with_fallback", "detect_language"]

if TYPE_CHECKING:
    from .decoder import decode
    from .fallback import decode_with_fallback
    from .language import detect_language

_LAZY = {"decode": ".decoder", "decode_with_fallback": ".fallback", "detect_language": ".language"}


def __getattr__(name: str) -> Any:
    # the PyTorch decoder loads torch; the ONNX Runtime path uses the shared parts without it
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
