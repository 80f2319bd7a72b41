"""Decoding of 30-s windows composed from small parts: logit filters, token selectors, a ranker."""

from .decoder import DecodingResult, compression_ratio, decode
from .fallback import decode_with_fallback
from .language import detect_language

__all__ = ["DecodingResult", "compression_ratio", "decode", "decode_with_fallback", "detect_language"]
