"""Decoding of 30-s windows composed from small parts: logit filters, token selectors, a ranker."""

from __future__ import annotations

from .decoder import decode
from .fallback import decode_with_fallback
from .language import detect_language
from .window import DecodingResult, compression_ratio

__all__ = ["DecodingResult", "compression_ratio", "decode", "decode_with_fallback", "detect_language"]
