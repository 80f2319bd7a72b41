"""How the int8 graphs are made so that they score as the float32 ones do (issue 23).

Measured on tiny.en and real speech (``bench/int8_error.py``): ONNX Runtime's dynamic quantization scales each
activation tensor as a whole (one scale for every frame and channel), and that loses the most where a few input
channels are far larger than the rest: the decoder's products (logit KL to float32 0.0043, top-1 agreement 97.9 %),
and the second MLP product of the encoder's later blocks, whose GELU outputs hold a few "massive" channels (tiny.en's
last block: one channel up to ~560 where the typical channel's maximum is ~1; base's last three blocks likewise),
so that the other channels are rounded to a few levels (the encoder's output 8 % off float32).

Those products become 8-bit MatMulNBits blocks of 32 along K: weights symmetric per output channel and block,
activations quantized per row and block (ONNX Runtime's accuracy level 4), so an outlier channel widens the scale of
its own block of 32 only. The rest of the encoder keeps dynamic quantization (per-channel weights): blockwise products
are slower there (a whole encoder of them ~1.7x), and its other inputs have no such outliers. Nothing depends on
data: each quantized weight is a function of the float32 one alone.

Only products are quantized, never the decoder's embedding lookups (Gather of the token and position tables): a lookup
does no arithmetic to save, and ONNX Runtime quantizes a Gather's table with one uint8 scale for the whole table
(tiny.en's token rows ~4 % off, its position rows ~3.7 %), which was the largest single part of the decoder's error
(tiny.en, ``bench/int8_error.py``: decoder alone next-token KL 0.00140 -> 0.00036, whole 0.00241 -> 0.00114). The
float32 tables are mapped from the folder's weight file, so a process holds only the rows it reads (+~5 MiB RSS).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

BLOCK_SIZE = 32  # MatMulNBits block along K: blocks of 64 and 128 left ~1.5-2x more logit error (KL) on tiny.en


def quantize_int8(out_dir: Path, names: list[str]) -> None:
    """Replace these float32 graphs in ``out_dir`` by their int8 versions: in the encoder's stages the MLP's second
    products as 8-bit blocks and the other products dynamically quantized (MatMul weights per channel); in the other
    graphs (decoder, aligner) every product as 8-bit blocks. Convolutions and embedding lookups (Gather) stay float32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process is about static quantization
    for name in names:
        path = out_dir / name
        if not name.startswith("encoder"):
            blockwise_matmuls(path)
            continue
        blockwise_matmuls(path, select=is_mlp_output)
        dst = out_dir / f"int8-{name}"
        quantize_dynamic(str(path), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
        os.replace(dst, path)


def is_mlp_output(weight: np.ndarray) -> bool:
    """The MLP's second product (K = 4 x N): its input is the GELU output, where the outlier channels are."""
    return weight.shape[0] == 4 * weight.shape[1]


def block_quantize(weight: np.ndarray, block_size: int = BLOCK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A (K, N) float32 weight as MatMulNBits' 8-bit B (N, K / block, block) uint8 (zero point 128) and its scales
    (N, K / block) float32: symmetric, max |w| of each output channel's block to 127."""
    k, n = weight.shape
    blocks = weight.astype(np.float32).T.reshape(n, k // block_size, block_size)
    scale = np.maximum(np.abs(blocks).max(axis=-1), np.float32(1e-12)) / np.float32(127.0)
    quantized = (np.clip(np.rint(blocks / scale[..., None]), -127, 127) + 128).astype(np.uint8)
    return quantized, scale.astype(np.float32)


def _initializers(graph) -> dict:
    return {init.name: init for init in graph.initializer}


def _weighted_matmuls(graph) -> list:
    """MatMul nodes whose second input is a 2-D weight and whose first is an activation."""
    inits = _initializers(graph)
    return [node for node in graph.node if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2
            and node.input[0] not in inits]


def blockwise_matmuls(path: Path, block_size: int = BLOCK_SIZE, select=lambda weight: True) -> None:
    """Each weighted MatMul whose K is a multiple of ``block_size`` (and whose weight ``select`` accepts) becomes an
    8-bit MatMulNBits (``block_quantize``), its activations quantized per row and block (accuracy level 4)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = _initializers(graph)
    for node in _weighted_matmuls(graph):
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        k, n = w.shape
        if k % block_size or not select(w):
            continue
        q, scale = block_quantize(w, block_size)
        base = node.input[1]
        graph.initializer.extend([numpy_helper.from_array(q, f"{base}_q8"), numpy_helper.from_array(scale, f"{base}_q8_scales")])
        replacement = onnx.helper.make_node("MatMulNBits", [node.input[0], f"{base}_q8", f"{base}_q8_scales"], list(node.output),
                                            name=node.name + "_q8", domain="com.microsoft", K=k, N=n, bits=8, block_size=block_size,
                                            accuracy_level=4)
        node.CopyFrom(replacement)
    used = {name for node in graph.node for name in node.input}  # the float32 weights that were replaced go
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))


