"""The last steps of making a model folder for ONNX Runtime, shared by the exporter (``export.py``, through PyTorch)
and the weight binder (``graphs.py``, without it): int8 quantization, onnxruntime's graph optimizer, ``meta.json``,
and the atomic rename into the cache.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

def quantize_graphs(out_dir: Path, names: list[str]) -> None:
    """Replace these graphs by their int8 versions (``quantize_plan``: the encoder's products dynamically quantized per
    channel except its MLP's second products, which, like the decoder's, become 8-bit blocks; Conv stays float32)."""
    from .quantize_plan import quantize_int8

    quantize_int8(out_dir, names)


def optimize_graphs(out_dir: Path, names: list[str]) -> None:
    """Replace these graphs by what ONNX Runtime's graph optimizer makes of them at its extended level (fused
    LayerNorm, Gelu, quantized products: the CPU EP's own kernels), so that each process loading them skips that
    work (the tiny.en int8 decoder's session: ~55-75 -> ~45 ms). The hardware-specific layout rewrites of the "all"
    level are left to each load, which still asks for them: an optimized graph is a valid graph for any later
    onnxruntime to optimize further, and a cache folder shared by machines with other CPUs stays valid."""
    import onnxruntime as ort

    for name in names:
        src, dst = out_dir / name, out_dir / f"optimized-{name}"
        if src.stat().st_size > 1 << 30:  # near protobuf's 2 GB limit the weights would have to be saved apart: kept as exported
            continue
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(dst)
        # the weights go beside the graph (<graph>.data), which onnxruntime maps into memory on load instead of parsing
        # and copying them out of the protobuf: the tiny.en int8 sessions load in ~50 instead of ~125 ms, ~30 MiB lower
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", weights_file(name))
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        os.replace(dst, src)


def weights_file(graph_name: str) -> str:
    """The file beside an optimized graph that holds its weights: decoder.onnx -> decoder.data."""
    return graph_name.removesuffix(".onnx") + ".data"


def write_model_folder(target: Path, prepare, meta: dict) -> None:
    """Build the folder ``target`` atomically: ``prepare(work)`` writes the finished graphs into a temporary folder
    beside it, then ``meta.json`` is written and the folder renamed into place."""
    from ..weights.cache import write_folder_atomically

    def fill(work: Path) -> None:
        prepare(work)
        # each file's size, checked at every load: the decoder graph is loaded only where it is used, so a file cut
        # short must be found without loading it
        sizes = {path.name: path.stat().st_size for path in sorted(work.iterdir()) if path.is_file()}
        (work / "meta.json").write_text(json.dumps({**meta, "files": sizes}), encoding="utf-8")

    write_folder_atomically(target, fill, "meta.json")


def bind_model(name_or_path: str | Path, target: Path, compute_type: str, version: int, *, cache_dir: str | os.PathLike | None = None,
               download: bool = True) -> bool:
    """Make ``target`` from the package's weight-free graphs (float32 or already quantized to int8) and the
    checkpoint's arrays, with ONNX Runtime alone (no PyTorch, no onnx package); False where the package has no
    graphs for this model's dimensions (the caller exports it through PyTorch then)."""
    from ..weights.arrays import load_array_checkpoint
    from .graphs import bind_graphs, shipped_graphs

    checkpoint = load_array_checkpoint(name_or_path, cache_dir=cache_dir, download=download)
    graphs = shipped_graphs(checkpoint.dims, version)
    if graphs is None:
        return False
    logging.getLogger("tingxie").info(f"preparing {name_or_path} for ONNX Runtime ({compute_type}) once, into {target}")
    meta = {"version": version, "dims": vars(checkpoint.dims), "alignment_heads": checkpoint.alignment_heads,
            "compute_type": compute_type, "name": str(name_or_path), "source": str(checkpoint.source)}
    def prepare(work: Path) -> None:
        bind_graphs(graphs, compute_type, checkpoint.state, work, weights_file)
        if compute_type == "int8":
            from .logits import write_kernel_weights
            from .native_decoder import write_step_weights

            write_kernel_weights(work, checkpoint.state["decoder.token_embedding.weight"])
            write_step_weights(work, checkpoint.state, checkpoint.dims.n_text_layer)

    write_model_folder(target, prepare, meta)
    return True
