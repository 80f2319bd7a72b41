"""Weight-free graphs: the exporter's ONNX graphs with every weight that comes from the checkpoint replaced by a
reference to the checkpoint tensor it is computed from, so that a model runs on ONNX Runtime without PyTorch.

``scripts/make_graphs.py`` exports each architecture once (through PyTorch, from a model whose every parameter holds
distinct random values), finds which parameter each initializer was computed from by matching values (as it is,
transposed, multiplied by a constant such as the queries' folded 1/sqrt(d_head), or both) and writes
``tingxie/assets/graphs/<arch>/``: the graphs with those initializers emptied, and ``bindings.json``::

    {"version": EXPORT_VERSION, "dims": {...}, "graphs": {"decoder.onnx": {"<initializer>": ["<parameter>", transpose, scale]}}}

At load, ``bind_weights`` fills them from the checkpoint's NumPy arrays (``tingxie.weights.arrays``). A CI test checks
that the shipped files equal a fresh export, so a change to the exporter fails loudly until they are made again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from ..weights.checkpoint import ModelDimensions

BINDINGS = "bindings.json"
# float initializers this small are the exporter's constants (a Gelu's 0.5, a shape's -1); larger ones must be bound
_CONSTANT_MAX_SIZE = 16


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
        if meta.get("version") == version and meta.get("dims") == asdict(dims):
            return folder
    return None


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

    def match(self, value: np.ndarray) -> tuple[str, bool, float] | None:
        found = self.exact.get(_key(value))
        if found is not None:
            return found[0], found[1], 1.0
        for name, transpose in self.by_shape.get(value.shape, []):
            source = self.state[name].T if transpose else self.state[name]
            at = int(np.argmax(np.abs(source)))
            if source.flat[at] == 0:
                continue
            scale = np.float32(value.flat[at] / source.flat[at])
            if np.array_equal(source * scale, value):
                return name, transpose, float(scale)
        return None


def strip_weights(export_dir: Path, state: dict[str, np.ndarray], dims: ModelDimensions, version: int, out_dir: Path) -> None:
    """Write the graphs of ``export_dir`` (exported from a model holding ``state``) weight-free into ``out_dir``,
    with ``bindings.json``. CheckpointError for a float initializer no parameter explains (it would ship random values)."""
    import onnx
    from onnx import numpy_helper

    matcher = _Matcher(state)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, dict[str, list]] = {}
    for path in sorted(export_dir.glob("*.onnx")):
        model = onnx.load(str(path))
        bound: dict[str, list] = {}
        for init in model.graph.initializer:
            value = numpy_helper.to_array(init)
            if value.dtype != np.float32 or value.size <= _CONSTANT_MAX_SIZE:
                continue
            found = matcher.match(value)
            if found is None:
                raise CheckpointError(f"{path.name}: the initializer {init.name} {value.shape} is computed from no parameter "
                                      "as it is, transposed or scaled: teach tingxie.ort.graphs the new transform")
            bound[init.name] = list(found)
            for field in ("raw_data", "float_data"):
                init.ClearField(field)
        graphs[path.name] = bound
        onnx.save(model, str(out_dir / path.name))
    meta = {"version": version, "dims": asdict(dims), "graphs": graphs}
    (out_dir / BINDINGS).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def bind_weights(graph_dir: Path, state: dict[str, np.ndarray], out_dir: Path) -> list[str]:
    """Write ``graph_dir``'s graphs into ``out_dir`` with their weights taken from ``state``; the names of the graphs
    that hold weights (those the int8 quantizer and the optimizer then process)."""
    import onnx

    meta = json.loads((graph_dir / BINDINGS).read_text(encoding="utf-8"))
    weighted = []
    for name, bound in sorted(meta["graphs"].items()):
        model = onnx.load(str(graph_dir / name))
        for init in model.graph.initializer:
            if init.name not in bound:
                continue
            parameter, transpose, scale = bound[init.name]
            if parameter not in state:
                raise CheckpointError(f"the checkpoint lacks {parameter}, which {name} needs")
            value = state[parameter].T if transpose else state[parameter]
            if scale != 1.0:
                value = value * np.float32(scale)
            if list(value.shape) != list(init.dims):
                raise CheckpointError(f"{parameter} has the shape {value.shape}; {name} needs {tuple(init.dims)}")
            init.raw_data = np.ascontiguousarray(value, dtype="<f4").tobytes()
        onnx.save(model, str(out_dir / name))
        if bound:
            weighted.append(name)
    return weighted
