"""What an exported model folder holds: its graph files and the export format's version (read by the exporter and
the runtime alike, so that neither imports the other)."""

from __future__ import annotations

EXPORT_VERSION = 18  # bump when the exported graphs change: older exports are then made again
DECODER_GRAPH = "decoder.onnx"
ALIGNER_GRAPH = "aligner.onnx"  # the decoder step over a whole sequence, with the alignment heads' cross-attention


def encoder_graph_names(n_layer: int) -> list[str]:
    """The encoder's stage graphs, in order: one more than its blocks."""
    return [f"encoder{i}.onnx" for i in range(n_layer + 1)]
