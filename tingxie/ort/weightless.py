"""Development time (PyTorch): an architecture's weight-free graphs, exported from a model whose every parameter
holds distinct random values (so that each initializer's source is found by its value) and stripped by
``graphs.strip_weights``. ``scripts/make_graphs.py`` writes them into the package; a CI test compares them with a
fresh export."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..weights.checkpoint import ModelDimensions
from .finish import quantize_graphs
from .graphs import strip_weights

# the architectures whose graphs ship in the package: each official model up to small (larger ones are exported
# through PyTorch on first use, as before)
SHIPPED_ARCHITECTURES = ("tiny.en", "tiny", "base.en", "base", "small.en", "small")


def random_state(dims: ModelDimensions, seed: int = 0) -> dict[str, np.ndarray]:
    """Every canonical parameter of a model of ``dims``, filled with distinct random float32 values."""
    from ..weights.canonical import canonical_names, expected_shape

    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(expected_shape(name, dims)) * 0.05).astype(np.float32)
            for name in canonical_names(dims.n_audio_layer, dims.n_text_layer)}


def export_weight_free(dims: ModelDimensions, out_dir: Path) -> None:
    """Export a model of ``dims`` through PyTorch and write its weight-free graphs and bindings into ``out_dir``."""
    import torch

    from ..model import Whisper
    from .export import export_graphs
    from .runtime import EXPORT_VERSION

    state = random_state(dims)
    model = Whisper(dims)
    model.load_state_dict({name: torch.from_numpy(array) for name, array in state.items()}, strict=True)
    model.eval()
    with tempfile.TemporaryDirectory(prefix="tingxie-graphs-") as work, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks that are constant for a given model
        exported, int8 = Path(work) / "default", Path(work) / "int8"
        exported.mkdir()
        export_graphs(model, exported)
        shutil.copytree(exported, int8)
        quantize_graphs(int8, [path.name for path in sorted(int8.glob("*.onnx")) if _has_weights(path)])
        strip_weights(exported, int8, state, dims, EXPORT_VERSION, out_dir)


def _has_weights(graph: Path) -> bool:
    """Whether a graph holds float weights (the exporter quantizes exactly those; the encoder's attention has none)."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    return any(init.data_type == onnx.TensorProto.FLOAT and np.prod(init.dims) > 16 for init in model.graph.initializer)
