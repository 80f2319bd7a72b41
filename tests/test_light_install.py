"""The default install transcribes without PyTorch: the shipped weight-free graphs are the exporter's own (a fresh
export equals them), binding a checkpoint's arrays into them gives exactly the graphs an export of that checkpoint
gives, and a whole transcription with word timestamps, hotwords and VAD never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, audio_path

from tingxie.ort.graphs import BINDINGS, graphs_root, shipped_graphs
from tingxie.ort.runtime import EXPORT_VERSION
from tingxie.ort.weightless import SHIPPED_ARCHITECTURES, export_weight_free
from tingxie.weights.registry import OFFICIAL_MODELS


def test_every_shipped_architecture_has_graphs_of_this_export_version():
    for arch in SHIPPED_ARCHITECTURES:
        meta = json.loads((graphs_root() / arch / BINDINGS).read_text(encoding="utf-8"))
        assert meta["version"] == EXPORT_VERSION, f"{arch}: graphs of export version {meta['version']}: run python scripts/make_graphs.py"
        assert shipped_graphs(OFFICIAL_MODELS[arch].dims, EXPORT_VERSION) == graphs_root() / arch
        assert all(meta["variants"][variant]["decoder.onnx"] for variant in ("default", "int8")), f"{arch}: the decoder binds no weights"


def test_shipped_graphs_equal_a_fresh_export(tmp_path):
    """Any change to the exported graphs fails here until the shipped ones are made again (scripts/make_graphs.py)."""
    export_weight_free(OFFICIAL_MODELS["tiny.en"].dims, tmp_path)
    shipped = graphs_root() / "tiny.en"
    fresh = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh == sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*") if p.is_file())
    for name in fresh:
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), f"{name} differs from a fresh export: run python scripts/make_graphs.py"


@pytest.mark.parametrize("compute_type", ["int8", "default"])
def test_the_model_bound_without_torch_computes_exactly_what_the_exported_one_does(tmp_path, compute_type):
    """The folder made from the shipped graphs and the embedded checkpoint's arrays against the one exported through
    PyTorch (and quantized by the exporter, for int8): the same encoder output and decoder logits, bit for bit."""
    from tingxie.audio import decode_audio, pad_or_trim
    from tingxie.mel import log_mel_spectrogram_numpy
    from tingxie.ort.export import export_model
    from tingxie.ort.finish import bind_model
    from tingxie.ort.runtime import OrtWhisper

    assert bind_model("tiny.en", tmp_path / "bound", compute_type, EXPORT_VERSION)
    export_model("tiny.en", tmp_path / "exported", compute_type)
    bound, exported = OrtWhisper(tmp_path / "bound", threads=1), OrtWhisper(tmp_path / "exported", threads=1)
    assert bound.dims == exported.dims and bound.alignment_heads == exported.alignment_heads
    mel = pad_or_trim(log_mel_spectrogram_numpy(decode_audio(str(audio_path("jfk"))), bound.dims.n_mels), 3000)[None]
    features = [model.embed_audio(mel) for model in (bound, exported)]
    for a, b in zip(features[0].cross_k + features[0].cross_vt, features[1].cross_k + features[1].cross_vt):
        assert np.array_equal(a, b)
    tokens = np.array([[50257, 50362, 400, 370]], dtype=np.int64)  # <|startoftranscript|><|notimestamps|> And so
    logits = [model.decode(tokens, model.new_cache(f)) for model, f in zip((bound, exported), features)]
    assert np.array_equal(logits[0], logits[1])


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
        if name in ("torch", "onnx") or name.startswith(("torch.", "onnx.")):  # neither is in the default install
            raise ImportError(f"{name} is not installed (blocked by the test)")
sys.meta_path.insert(0, NoTorch())
from tingxie.cli import main
audio, out = sys.argv[1], sys.argv[2]
for model in ("tiny.en", "base"):
    code = main(["transcribe", audio, "--model", model, "--language", "en", "--word_timestamps", "True", "--hotwords", "Kennedy",
                 "--vad_filter", "True", "--output_format", "json", "--output_dir", f"{out}/{model}", "--verbose", "False"])
    assert code == 0, code
# the torch backend, asked for without PyTorch: one line that names the extra, no traceback
import contextlib, io
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["transcribe", audio, "--backend", "torch", "--output_dir", out])
assert code == 2 and err.getvalue().count("\\n") == 1 and "tingxie-asr[torch]" in err.getvalue(), (code, err.getvalue())
print(json.dumps(sorted(m for m in sys.modules if m in ("torch", "onnx") or m.startswith(("torch.", "onnx.")))))
"""


def test_transcription_with_word_timestamps_hotwords_and_vad_never_imports_torch(tmp_path):
    """The default path on a fresh cache: the embedded tiny.en and base are prepared from the shipped graphs, with
    neither torch nor onnx importable."""
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


def test_hugging_face_checkpoints_read_without_torch_equal_the_torch_loader(tmp_path):
    """A Hugging Face folder (safetensors, and pytorch_model.bin shards) read as NumPy arrays: the same parameters,
    dims and alignment heads as the PyTorch loader's."""
    import torch
    from safetensors.torch import save_file
    from test_weights import DIMS, canonical_state, hf_state, write_hf_config

    from tingxie.weights import load_checkpoint
    from tingxie.weights.arrays import load_array_checkpoint

    state = hf_state(canonical_state(DIMS))
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    for folder in (single, sharded):
        folder.mkdir()
        write_hf_config(folder, DIMS, heads=[[1, 0], [1, 3]])
    save_file(state, str(single / "model.safetensors"))
    names = sorted(state)
    halves = {"pytorch_model-1.bin": names[: len(names) // 2], "pytorch_model-2.bin": names[len(names) // 2 :]}
    for shard, keys in halves.items():
        torch.save({key: state[key] for key in keys}, sharded / shard)
    (sharded / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {key: shard for shard, keys in halves.items() for key in keys}}), encoding="utf-8")
    for folder in (single, sharded):
        arrays, checkpoint = load_array_checkpoint(folder), load_checkpoint(folder)
        assert arrays.dims == checkpoint.dims == DIMS
        assert arrays.alignment_heads == checkpoint.alignment_heads == [(1, 0), (1, 3)]
        assert set(arrays.state) == set(checkpoint.state_dict)
        for name, tensor in checkpoint.state_dict.items():
            assert arrays.state[name].dtype == np.float32 and np.array_equal(arrays.state[name], tensor.float().numpy()), name
