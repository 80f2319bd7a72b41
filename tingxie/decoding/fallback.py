"""Temperature fallback: re-decode a window at higher temperatures while it looks like a failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..options import TranscribeOptions
from ..tokenizer import Tokenizer
from .filters import LogitFilter
from .window import DecodingResult

if TYPE_CHECKING:
    import torch


def needs_fallback(result: DecodingResult, options: TranscribeOptions) -> bool:
    """Too repetitive or too unlikely, unless it is simply silence."""
    failed = False
    if options.compression_ratio_threshold is not None and result.compression_ratio > options.compression_ratio_threshold:
        failed = True
    if options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold:
        failed = True
    if (
        options.no_speech_threshold is not None
        and result.no_speech_prob > options.no_speech_threshold
        and options.logprob_threshold is not None
        and result.avg_logprob < options.logprob_threshold
    ):
        failed = False
    return failed


def window_decoder(model: Any) -> Callable[..., list[DecodingResult]]:
    """The decode function of the model's runtime: PyTorch tensors or ONNX Runtime with NumPy."""
    if getattr(model, "runtime", "torch") == "onnxruntime":
        from ..ort.decode import decode_windows

        return decode_windows
    from .decoder import decode

    return decode


def decode_with_fallback(
    model: Any,
    features: Any,
    tokenizer: Tokenizer,
    options: TranscribeOptions,
    prompt: list[int] | None = None,
    *,
    extra_filters: list[LogitFilter] | None = None,
    generator: torch.Generator | Any | None = None,
) -> DecodingResult:
    """Decode one window's features (1, n_audio_ctx, n_state), trying each temperature in turn."""
    from dataclasses import replace

    decode = window_decoder(model)
    result: DecodingResult | None = None
    for temperature in options.temperature:
        window = replace(options.window_decoding(temperature), prompt=tuple(prompt) if prompt else None)
        result = decode(model, features, tokenizer, window, extra_filters=extra_filters, generator=generator)[0]
        if not needs_fallback(result, options):
            break
    assert result is not None
    return result
