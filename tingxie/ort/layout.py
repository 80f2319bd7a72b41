"""What an exported model folder holds: its graph files and the export format's version (read by the exporter and
the runtime alike, so that neither imports the other)."""

from __future__ import annotations

EXPORT_VERSION = 27  # bump when the exported graphs change: older exports are then made again
DECODER_GRAPH = "decoder.onnx"  # the decoder step; with alignment heads asked for, also their cross-attention scores
LOGITS_GRAPH = "logits.onnx"  # the decoder's hidden state against the vocabulary (where no compiled kernel does it)


def encoder_graph_names(n_layer: int) -> list[str]:
    """The encoder's stage graphs, in order: one more than its blocks."""
    return [f"encoder{i}.onnx" for i in range(n_layer + 1)]
