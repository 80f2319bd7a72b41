"""The speaker encoder as an ONNX graph, written from its weights with the ``onnx`` package (no PyTorch): three LSTM
layers over the mel frames, the last layer's final hidden state through a linear layer, a ReLU and L2 normalisation."""

from __future__ import annotations

import numpy as np

HIDDEN = 256
LAYERS = 3
N_MELS = 40
OPSET = 17


def _onnx_gates(weight: np.ndarray) -> np.ndarray:
    """PyTorch stacks an LSTM's gates as input, forget, cell, output; ONNX as input, output, forget, cell."""
    i, f, g, o = np.split(weight, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def encoder_graph(state: dict[str, np.ndarray]):
    """The ModelProto: input ``mels`` (batch, frames, 40) float32, output ``embeddings`` (batch, 256) of unit length."""
    from onnx import TensorProto, helper, numpy_helper

    initializers = []
    nodes = [helper.make_node("Transpose", ["mels"], ["x0"], perm=[1, 0, 2])]  # LSTM reads (frames, batch, features)
    for layer in range(LAYERS):
        w = _onnx_gates(state[f"lstm.weight_ih_l{layer}"])[None]
        r = _onnx_gates(state[f"lstm.weight_hh_l{layer}"])[None]
        b = np.concatenate([_onnx_gates(state[f"lstm.bias_ih_l{layer}"]), _onnx_gates(state[f"lstm.bias_hh_l{layer}"])])[None]
        for name, value in ((f"W{layer}", w), (f"R{layer}", r), (f"B{layer}", b)):
            initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        outputs = [f"y{layer}", f"h{layer}"]
        nodes.append(helper.make_node("LSTM", [f"x{layer}", f"W{layer}", f"R{layer}", f"B{layer}"], outputs, hidden_size=HIDDEN))
        if layer + 1 < LAYERS:  # Y is (frames, directions, batch, hidden): the next layer's input without the direction axis
            initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), f"axis{layer}"))
            nodes.append(helper.make_node("Squeeze", [f"y{layer}", f"axis{layer}"], [f"x{layer + 1}"]))
    initializers += [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis_dir"),
        numpy_helper.from_array(np.ascontiguousarray(state["linear.weight"], dtype=np.float32), "linear_w"),
        numpy_helper.from_array(np.ascontiguousarray(state["linear.bias"], dtype=np.float32), "linear_b"),
    ]
    nodes += [
        helper.make_node("Squeeze", [f"h{LAYERS - 1}", "axis_dir"], ["last"]),
        helper.make_node("Gemm", ["last", "linear_w", "linear_b"], ["projected"], transB=1),
        helper.make_node("Relu", ["projected"], ["positive"]),
        helper.make_node("LpNormalization", ["positive"], ["embeddings"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "ge2e_speaker_encoder",
        [helper.make_tensor_value_info("mels", TensorProto.FLOAT, ["batch", "frames", N_MELS])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", HIDDEN])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tingxie")
    model.ir_version = 8
    return model
