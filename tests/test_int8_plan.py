"""The int8 plan (tingxie/ort/quantize_plan.py) quantizes products only: the decoder's embedding lookups keep their
float32 tables in the default model folder (issue 23: ONNX Runtime's one uint8 scale per table was the largest part
of the decoder's error against float32)."""

from __future__ import annotations

import tingxie
from tingxie.ort.runtime import export_folder


def test_default_int8_decoder_looks_up_float32_embeddings():
    import onnx

    tingxie.load_model("tiny.en")  # makes the default int8 folder where the cache has none
    decoder = onnx.load(str(export_folder("tiny.en", "int8") / "decoder.onnx"), load_external_data=False)
    tables = {init.name: init for init in decoder.graph.initializer}
    lookups = [node for node in decoder.graph.node if node.op_type == "Gather" and node.input[0] in tables]
    shapes = sorted(tuple(tables[node.input[0]].dims) for node in lookups)
    assert shapes == [(448, 384), (51864, 384)], shapes  # the position and token tables, read by token and position
    assert all(tables[node.input[0]].data_type == onnx.TensorProto.FLOAT for node in lookups)
    ops = {node.op_type for node in decoder.graph.node}
    assert "MatMulNBits" in ops and "DequantizeLinear" not in ops  # products in 8-bit blocks, no dequantized table
