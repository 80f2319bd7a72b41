"""The encoder on ONNX Runtime: its stage graphs (``export.EncoderStage``) with the attention between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .attention import load_attention
from .layout import encoder_graph_names


class StagedEncoder:
    """mel (audio, n_mels, 3000) -> each decoder layer's cross K (transposed) and V, stage by stage."""

    def __init__(self, folder: Path, n_layer: int, n_head: int, n_state: int, compute_type: str, options, attention_options,
                 threads: int = 0):
        import onnxruntime as ort

        self.stages = [ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
                       for name in encoder_graph_names(n_layer)]
        self.attention = load_attention(folder, compute_type, n_head, n_state, attention_options, threads)

    def run(self, mel: np.ndarray) -> list[np.ndarray]:
        x, q, k, v = self.stages[0].run(None, {"mel": mel})
        for stage in self.stages[1:-1]:
            x, q, k, v = stage.run(None, {"x": x, "attention": self.attention(q, k, v)})
        return self.stages[-1].run(None, {"x": x, "attention": self.attention(q, k, v)})
