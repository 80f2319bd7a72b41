"""The default install transcribes without PyTorch: the shipped weight-free graphs are the exporter's own (a fresh
export equals them), binding a checkpoint's arrays into them gives exactly the graphs an export of that checkpoint
gives, and a whole transcription with word timestamps, hotwords and VAD never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from conftest import REPO, audio_path

from tingxie.ort.graphs import BINDINGS, bind_weights, graphs_root, shipped_graphs
from tingxie.ort.runtime import EXPORT_VERSION
from tingxie.ort.weightless import SHIPPED_ARCHITECTURES, export_weight_free
from tingxie.weights.registry import OFFICIAL_MODELS


def test_every_shipped_architecture_has_graphs_of_this_export_version():
    for arch in SHIPPED_ARCHITECTURES:
        meta = json.loads((graphs_root() / arch / BINDINGS).read_text(encoding="utf-8"))
        assert meta["version"] == EXPORT_VERSION, f"{arch}: graphs of export version {meta['version']}: run python scripts/make_graphs.py"
        assert shipped_graphs(OFFICIAL_MODELS[arch].dims, EXPORT_VERSION) == graphs_root() / arch
        assert meta["graphs"]["decoder.onnx"], f"{arch}: the decoder binds no weights"


def test_shipped_graphs_equal_a_fresh_export(tmp_path):
    """Any change to the exported graphs fails here until the shipped ones are made again (scripts/make_graphs.py)."""
    export_weight_free(OFFICIAL_MODELS["tiny.en"].dims, tmp_path)
    shipped = graphs_root() / "tiny.en"
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == sorted(p.name for p in shipped.iterdir())
    for name in fresh:
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), f"{name} differs from a fresh export: run python scripts/make_graphs.py"


def test_bound_graphs_equal_the_export_of_the_real_checkpoint(tmp_path):
    import torch

    from tingxie.model import build_model
    from tingxie.ort.export import export_graphs
    from tingxie.weights import load_checkpoint
    from tingxie.weights.arrays import load_array_checkpoint

    arrays = load_array_checkpoint("tiny.en")
    checkpoint = load_checkpoint("tiny.en", convert_to=torch.float32)
    assert arrays.dims == checkpoint.dims and arrays.alignment_heads == [tuple(h) for h in checkpoint.alignment_heads]
    bound, exported = tmp_path / "bound", tmp_path / "exported"
    bound.mkdir()
    exported.mkdir()
    weighted = bind_weights(graphs_root() / "tiny.en", arrays.state, bound)
    assert "decoder.onnx" in weighted and "encoder0.onnx" in weighted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_graphs(build_model(checkpoint, device="cpu", dtype=torch.float32), exported)
    names = sorted(p.name for p in exported.glob("*.onnx"))
    assert names == sorted(p.name for p in bound.glob("*.onnx"))
    for name in names:
        assert (bound / name).read_bytes() == (exported / name).read_bytes(), name


def test_torch_zip_files_read_without_torch_equal_torch_load(tmp_path):
    import torch

    from tingxie.weights.pt_numpy import load_torch_zip

    big = torch.randn(10, 10)
    state = {"half": torch.randn(3, 4).half(), "transposed": torch.randn(5, 6).t(), "bfloat16": torch.randn(7).bfloat16(),
             "parameter": torch.nn.Parameter(torch.randn(2, 2)), "ints": torch.arange(5), "slice": big[2:5, 1:9:2]}
    torch.save({"dims": {"n_mels": 80}, "model_state_dict": state}, tmp_path / "model.pt")
    loaded = load_torch_zip(tmp_path / "model.pt")
    assert loaded["dims"] == {"n_mels": 80}
    for name, tensor in state.items():
        expected = tensor.detach().float().numpy() if tensor.dtype == torch.bfloat16 else tensor.detach().numpy()
        assert np.array_equal(loaded["model_state_dict"][name], expected), name


_NO_TORCH = """
import json, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed (blocked by the test)")
sys.meta_path.insert(0, NoTorch())
from tingxie.cli import main
audio, out = sys.argv[1], sys.argv[2]
for model in ("tiny.en", "base"):
    code = main(["transcribe", audio, "--model", model, "--language", "en", "--word_timestamps", "True", "--hotwords", "Kennedy",
                 "--vad_filter", "True", "--output_format", "json", "--output_dir", f"{out}/{model}", "--verbose", "False"])
    assert code == 0, code
print(json.dumps(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))))
"""


def test_transcription_with_word_timestamps_hotwords_and_vad_never_imports_torch(tmp_path):
    """The default path on a fresh cache: the embedded tiny.en and base are prepared from the shipped graphs."""
    env = {**os.environ, "TINGXIE_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", _NO_TORCH, str(audio_path("jfk")), str(tmp_path)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
    assert "preparing tiny.en for ONNX Runtime" in run.stderr and "exporting" not in run.stderr
    for model in ("tiny.en", "base"):
        result = json.loads((tmp_path / model / "jfk.json").read_text(encoding="utf-8"))
        assert "ask not what your country can do for you" in result["text"].lower(), (model, result["text"])
        words = [w for s in result["segments"] for w in s["words"]]
        assert len(words) >= 20 and all(0 <= w["start"] <= w["end"] <= 11.1 for w in words), model


def test_a_model_without_shipped_graphs_names_the_torch_extra_when_torch_is_missing():
    """medium's graphs are not shipped: without PyTorch the error says how to get them (checked on dims alone)."""
    assert shipped_graphs(OFFICIAL_MODELS["medium"].dims, EXPORT_VERSION) is None
    assert shipped_graphs(OFFICIAL_MODELS["tiny.en"].dims, EXPORT_VERSION - 1) is None
