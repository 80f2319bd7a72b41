"""int8 compute on CPU: linear layers with int8 weights and activations quantized on the fly.

Each ``Linear`` of the encoder and decoder blocks, and the decoder's output projection (the tied
token embedding), is replaced by :class:`Int8Linear`: weights quantized once per output channel
(symmetric, scale = max |w| / 127), activations per call by PyTorch's dynamic-quantization kernels
(fbgemm on x86, with VNNI where the CPU has it). Convolutions, layer norms, attention and the
embedding lookup stay in float32. This is the CPU analogue of CTranslate2's ``int8`` compute type.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import OptionError
from .options import COMPUTE_TYPES


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_vnni() -> bool:
    """VNNI multiplies int8 into int32 without the 16-bit saturation of older SIMD, so 8-bit activations are safe."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with W in int8 per output channel and x quantized per call (output float32)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, reduce_range: bool | None = None):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        # without VNNI the kernels need 7-bit activations to stay clear of saturation
        self.reduce_range = (not has_vnni()) if reduce_range is None else reduce_range
        w = weight.detach().to("cpu", torch.float32)
        scale = (torch.linalg.vector_norm(w, ord=float("inf"), dim=1).clamp(min=1e-12) / 127).double()  # max |w| in one pass
        with warnings.catch_warnings():  # quantized tensors are flagged for future removal; the kernels are current
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
            b = None if bias is None else bias.detach().to("cpu", torch.float32)
            self._packed = torch.ops.quantized.linear_prepack(q, b)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x.float(), self._packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace, in place, the Linear layers of ``model``'s blocks and its output projection by Int8Linear."""
    if model.device.type != "cpu":
        raise OptionError(f"compute type int8 runs on the CPU only, not on {model.device.type}")
    if model.dtype != torch.float32:
        raise OptionError("compute type int8 needs dtype float32 (its activations are quantized from float32)")
    for stack in (model.encoder.blocks, model.decoder.blocks):
        for block in stack:
            for parent in list(block.modules()):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.Linear):
                        setattr(parent, name, Int8Linear.from_linear(child))
    model.decoder.logits_proj = Int8Linear(model.decoder.token_embedding.weight, None)
    return model


def resolve_compute_type(compute_type: str | None, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """'int8' or 'default'; 'auto' picks int8 on a CPU in float32 (the bench's choice), default elsewhere."""
    value = (compute_type or "default").strip().lower()
    if value not in COMPUTE_TYPES:
        raise OptionError(f"compute_type must be one of {', '.join(COMPUTE_TYPES)}, not {compute_type!r}")
    if value == "auto":
        return "int8" if device.type == "cpu" and dtype == torch.float32 else "default"
    if value == "int8" and device.type != "cpu":
        raise OptionError(f"compute_type int8 runs on the CPU only, not on {device.type}")
    return value
