"""Weight-free graphs: the exporter's ONNX graphs with every weight that comes from the checkpoint replaced by a
reference to the checkpoint tensor it is computed from, so that a model runs on ONNX Runtime without PyTorch (and
without the ``onnx`` package: ONNX Runtime itself takes the weights and writes the optimized model folder).

``scripts/make_graphs.py`` exports each architecture once (through PyTorch, from a model whose every parameter holds
distinct random values), quantizes a copy to int8 as ``finish.quantize_graphs`` does, finds which parameter each
initializer was computed from by matching values (as it is, transposed, multiplied by a constant such as the queries'
folded 1/sqrt(d_head), or both; for int8, that parameter quantized: ``quantize_weights``) and writes
``tingxie/assets/graphs/<arch>/{default,int8}/*.onnx`` with those initializers emptied (marked external) and
``bindings.json``::

    {"version": EXPORT_VERSION, "dims": {...},
     "variants": {"int8": {"decoder.onnx": {"<initializer>": {"param": ..., "transpose": bool, "scale": float,
                                                              "quantize": "values" | "scales" | "zero_points", "axis": int | null}}}}}

At load, ``bind_graphs`` computes each initializer from the checkpoint's NumPy arrays (``tingxie.weights.arrays``)
and hands them to ONNX Runtime, whose graph optimizer writes each graph with its weights beside it. A CI test checks
that the shipped files equal a fresh export, so a change to the exporter fails loudly until they are made again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from ..weights.checkpoint import ModelDimensions

BINDINGS = "bindings.json"
VARIANTS = ("default", "int8")  # the compute types: float32, and int8 weights as finish.quantize_graphs makes them
# float initializers this small are the exporter's constants (a Gelu's 0.5, a shape's -1); larger ones must be bound
_CONSTANT_MAX_SIZE = 16
_EXTERNAL = "tingxie-checkpoint"  # where a stripped initializer says its data is: ONNX Runtime is given it at load


def graphs_root() -> Path:
    from importlib.resources import files

    return Path(str(files("tingxie") / "assets" / "graphs"))


def shipped_graphs(dims: ModelDimensions, version: int) -> Path | None:
    """The package's weight-free graphs for a model of exactly these dimensions, made by this export version."""
    root = graphs_root()
    if not root.is_dir():
        return None
    for folder in sorted(root.iterdir()):
        try:
            meta = json.loads((folder / BINDINGS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("version") == version and meta.get("dims") == asdict(dims) and "variants" in meta:
            return folder
    return None


def quantize_weights(value: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(quantized values, scales, zero points) as onnxruntime's dynamic quantizer computes them for weights: per
    channel along ``axis``, symmetric int8 in [-127, 127] with zero points 0 (MatMul weights); ``axis`` None: one
    asymmetric uint8 scale and zero point for the whole tensor (Gather's embedding). Scales are computed in float64
    and stored as float32, as there."""
    if axis is None:
        rmin = np.minimum(value.min(), np.float32(0))
        rmax = np.maximum(value.max(), np.float32(0))
        wide = (np.float64(rmax) - np.float64(rmin)) / 255.0
        if wide < np.finfo(np.float32).tiny:
            scale, zero_point = np.array(1.0, np.float32), np.array(0, np.uint8)
        else:
            zero_point = np.array(np.round(0 - rmin / wide), dtype=np.uint8)
            scale = np.array(wide, dtype=np.float32)
        quantized = np.clip(np.round(value.astype(np.float32) / scale) + zero_point, 0, 255).astype(np.uint8)
        return quantized, scale, zero_point
    other = tuple(i for i in range(value.ndim) if i != axis)
    absmax = np.maximum(np.abs(np.minimum(value.min(axis=other), 0)), np.abs(np.maximum(value.max(axis=other), 0)))
    wide = (absmax.astype(np.float64) * 2) / 254.0
    scale = np.where(wide < np.finfo(np.float32).tiny, 1.0, wide).astype(np.float32)
    shape = [1] * value.ndim
    shape[axis] = -1
    quantized = np.clip(np.round(value.astype(np.float32) / scale.reshape(shape)), -128, 127).astype(np.int8)
    return quantized, scale, np.zeros(scale.shape, np.int8)


def _derived(state: dict[str, np.ndarray], binding: dict) -> np.ndarray:
    """The initializer a binding describes, computed from the checkpoint's arrays."""
    value = state[binding["param"]]
    if binding["transpose"]:
        value = value.T
    if binding["scale"] != 1.0:
        value = value * np.float32(binding["scale"])
    if binding.get("quantize") == "blocks":  # an 8-bit MatMulNBits weight (quantize_plan): its values or its scales
        from .quantize_plan import block_quantize

        return block_quantize(value, binding["block_size"])[binding["part"]]
    if "quantize" in binding:
        parts = dict(zip(_QUANTIZED_PARTS, quantize_weights(value, binding["axis"])))
        return parts[binding["quantize"]]
    return np.require(value, dtype=np.float32, requirements="C")


_QUANTIZED_PARTS = ("values", "scales", "zero_points")  # quantize_weights' results, named for the quantizer's suffixes
_SUFFIXES = {"_quantized": "values", "_scale": "scales", "_zero_point": "zero_points"}
_BLOCK_SUFFIXES = {"_q8": 0, "_q8_scales": 1}  # quantize_plan.blockwise_matmuls' names: block_quantize's results


def _key(array: np.ndarray) -> tuple:
    return array.shape, hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()


class _Matcher:
    """Finds the parameter an initializer was computed from: equal as it is or transposed, else a constant multiple."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state
        self.exact: dict[tuple, tuple[str, bool]] = {}
        self.by_shape: dict[tuple, list[tuple[str, bool]]] = {}
        for name, array in state.items():
            for transpose in (False, True) if array.ndim == 2 else (False,):
                view = array.T if transpose else array
                self.exact.setdefault(_key(view), (name, transpose))
                self.by_shape.setdefault(view.shape, []).append((name, transpose))

    def match(self, value: np.ndarray) -> dict | None:
        found = self.exact.get(_key(value))
        if found is not None:
            return {"param": found[0], "transpose": found[1], "scale": 1.0}
        for name, transpose in self.by_shape.get(value.shape, []):
            source = self.state[name].T if transpose else self.state[name]
            at = int(np.argmax(np.abs(source)))
            if source.flat[at] == 0:
                continue
            scale = np.float32(value.flat[at] / source.flat[at])
            if np.array_equal(source * scale, value):
                return {"param": name, "transpose": transpose, "scale": float(scale)}
        return None


def _strip_graph(path: Path, state: dict[str, np.ndarray], matcher: _Matcher, float_bindings: dict[str, dict], out: Path) -> dict[str, dict]:
    """Write the graph at ``path`` weight-free to ``out``; its bindings. ``float_bindings``: those of the same graph
    before int8 quantization (an int8 graph's ``X_quantized`` and ``X_scale`` come from the float ``X``)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    bound: dict[str, dict] = {}
    for init in model.graph.initializer:
        value = numpy_helper.to_array(init)
        binding = None
        for suffix, part in _BLOCK_SUFFIXES.items():
            source = float_bindings.get(init.name.removesuffix(suffix)) if init.name.endswith(suffix) else None
            if source is None:
                continue
            for block_size in (32, 16, 64, 128, 256):
                candidate = {**source, "quantize": "blocks", "part": part, "block_size": block_size}
                try:
                    derived = _derived(state, candidate)
                except ValueError:  # K is no multiple of this block size
                    continue
                if derived.shape == value.shape and derived.dtype == value.dtype and np.array_equal(derived, value):
                    binding = candidate
                    break
            if binding is None:
                raise CheckpointError(f"{path.name}: {init.name} is not {source['param']} as quantize_plan.block_quantize "
                                      "computes it: teach tingxie.ort.graphs the new quantization")
        for suffix, kind in _SUFFIXES.items():
            if binding is not None:
                break
            source = float_bindings.get(init.name.removesuffix(suffix)) if init.name.endswith(suffix) else None
            if source is None:
                continue
            for axis in (None, *range(state[source["param"]].ndim)):
                candidate = {**source, "quantize": kind, "axis": axis}
                derived = _derived(state, candidate)
                if derived.shape == value.shape and derived.dtype == value.dtype and np.array_equal(derived, value):
                    binding = candidate
                    break
            if binding is None:
                raise CheckpointError(f"{path.name}: {init.name} is not {source['param']} quantized as quantize_weights "
                                      "computes it: onnxruntime's quantizer changed")
        if binding is None and value.dtype == np.float32 and value.size > _CONSTANT_MAX_SIZE:
            binding = matcher.match(value)
            if binding is None:
                raise CheckpointError(f"{path.name}: the initializer {init.name} {value.shape} is computed from no parameter "
                                      "as it is, transposed or scaled: teach tingxie.ort.graphs the new transform")
        if binding is None:
            continue
        bound[init.name] = binding
        for field in ("raw_data", "float_data", "int32_data", "int64_data"):
            init.ClearField(field)
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        entry = init.external_data.add()
        entry.key, entry.value = "location", _EXTERNAL
    onnx.save(model, str(out / path.name))
    return bound


def strip_weights(export_dir: Path, int8_dir: Path, state: dict[str, np.ndarray], dims: ModelDimensions, version: int, out_dir: Path) -> None:
    """Write the float32 graphs of ``export_dir`` and their int8 versions in ``int8_dir`` (exported from a model
    holding ``state``) weight-free into ``out_dir``, with ``bindings.json``. CheckpointError for an initializer no
    parameter explains (it would ship random values)."""
    matcher = _Matcher(state)
    variants: dict[str, dict[str, dict]] = {}
    for variant, source in (("default", export_dir), ("int8", int8_dir)):
        (out_dir / variant).mkdir(parents=True, exist_ok=True)
        variants[variant] = {path.name: _strip_graph(path, state, matcher, variants.get("default", {}).get(path.name, {}), out_dir / variant)
                             for path in sorted(source.glob("*.onnx"))}
    meta = {"version": version, "dims": asdict(dims), "variants": variants}
    (out_dir / BINDINGS).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def bind_graphs(graph_dir: Path, variant: str, state: dict[str, np.ndarray], out_dir: Path, weights_file) -> None:
    """Write ``graph_dir``'s graphs of ``variant`` into ``out_dir`` with their weights computed from ``state``, through
    ONNX Runtime's graph optimizer at its extended level (as ``finish.optimize_graphs``): each graph's weights go to
    ``weights_file(name)`` beside it."""
    import onnxruntime as ort

    meta = json.loads((graph_dir / BINDINGS).read_text(encoding="utf-8"))
    for name, bound in sorted(meta["variants"][variant].items()):
        if not bound:  # no weights (the encoder's attention alone): the graph as it is
            shutil.copyfile(graph_dir / variant / name, out_dir / name)
            continue
        names, values = [], []
        for initializer, binding in bound.items():
            if binding["param"] not in state:
                raise CheckpointError(f"the checkpoint lacks {binding['param']}, which {name} needs")
            names.append(initializer)
            values.append(ort.OrtValue.ortvalue_from_numpy(np.require(_derived(state, binding), requirements="C")))  # 0-d stays 0-d
        options = ort.SessionOptions()
        options.add_external_initializers(names, values)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(out_dir / name)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", weights_file(name))
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        try:
            ort.InferenceSession(str(graph_dir / variant / name), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error types: a shape that does not fit the graph, a damaged file
            raise CheckpointError(f"binding the checkpoint's weights into {name} failed: {e}") from e
