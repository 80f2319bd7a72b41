"""The encoder on ONNX Runtime: its stage graphs (``export.EncoderStage``) with the attention between them; for int8
models on CPUs with AVX512-BF16 (AMX tiles or not), ``bf16_encoder.Bf16Encoder`` instead (``load_encoder``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .attention import load_attention
from .layout import encoder_graph_names

if TYPE_CHECKING:
    from .bf16_encoder import Bf16Encoder


class StagedEncoder:
    """mel (audio, n_mels, 3000) -> each decoder layer's cross K (transposed) and V, stage by stage."""

    def __init__(self, folder: Path, n_layer: int, n_head: int, n_state: int, compute_type: str, options, attention_options,
                 threads: int = 0):
        import onnxruntime as ort

        self.stages = [ort.InferenceSession(str(folder / name), options(), providers=["CPUExecutionProvider"])
                       for name in encoder_graph_names(n_layer)]
        self.attention = load_attention(folder, compute_type, n_head, n_state, attention_options, threads)

    @property
    def takes_fewer_frames(self) -> bool:
        """Whether the stages after the first accept fewer than the window's frames (graphs exported with a named
        frames axis: every part of a stage but the attention works frame by frame)."""
        session = getattr(self.attention, "_session", None)  # ONNX Runtime's attention graph, where it runs
        graphs = [self.stages[1], *([session] if session is not None else [])]
        return all(isinstance(graph.get_inputs()[0].shape[1], str) for graph in graphs)

    def run(self, mel: np.ndarray, frames: int | None = None) -> list[np.ndarray]:
        """``frames``: encode only the first this many frames of the window after the convolutions (the attention
        sees only them: not the reference's arithmetic; see ``takes_fewer_frames``)."""
        x, q, k, v = self.stages[0].run(None, {"mel": mel})
        if frames is not None and frames < x.shape[1]:
            x, q, k, v = (np.ascontiguousarray(a[:, :frames]) for a in (x, q, k, v))
        for stage in self.stages[1:-1]:
            x, q, k, v = stage.run(None, {"x": x, "attention": self.attention(q, k, v)})
        return self.stages[-1].run(None, {"x": x, "attention": self.attention(q, k, v)})


def load_encoder(folder: Path, n_layer: int, n_head: int, n_state: int, compute_type: str, options, attention_options,
                 threads: int = 0) -> StagedEncoder | Bf16Encoder:
    """int8 models: the bfloat16 encoder where the CPU has AVX512-BF16 and the compiled kernels are built (int8's
    accuracy then is float32's); else, or with ``TINGXIE_ENCODER=int8`` or another attention asked for (``TINGXIE_ATTENTION``),
    ``StagedEncoder``."""
    if compute_type == "int8" and os.environ.get("TINGXIE_ENCODER") != "int8" and not os.environ.get("TINGXIE_ATTENTION"):
        from .bf16_encoder import load_bf16_encoder

        encoder = load_bf16_encoder(folder, n_head, n_state, threads)
        if encoder is not None:
            return encoder
    return StagedEncoder(folder, n_layer, n_head, n_state, compute_type, options, attention_options, threads)
