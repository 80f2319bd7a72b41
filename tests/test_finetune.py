"""Fine-tuning: the training pass equals the model's, a few steps lower the loss, the output loads, resume continues.

Real tiny.en weights in float32 on the CPU, trained on two short real recordings from ../shared.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import REPO, audio_path, golden, manifest_rows

# Two short clips with human transcripts; one holds the rare product name "ComfyUI".
CLIPS = ("libri_horizon", "comfyui_hotword")


def write_manifest(folder: Path) -> Path:
    refs = {row["id"]: row["reference"] for row in manifest_rows()}
    path = folder / "train.tsv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["audio", "text"])
        for clip in CLIPS:
            writer.writerow([str(audio_path(clip)), refs[clip]])
    return path


def base_config(tmp_path: Path, **overrides):
    from tingxie.finetune import FinetuneConfig

    settings = dict(train=str(write_manifest(tmp_path)), out=str(tmp_path / "out"), batch_size=2, warmup_steps=0,
                    schedule="constant", lora_dropout=0.0, spec_augment=False, eval_before=False, eval_after=False,
                    progress=False, threads=2)
    settings.update(overrides)
    return FinetuneConfig(**settings)


def batch_of(config, model):
    """The training batch of the two clips, as the trainer builds it, and the module to score it with."""
    from tingxie.finetune.data import collate, read_examples, resolve_rows

    tokenizer = model.tokenizer("en")
    examples = read_examples(resolve_rows(Path(config.train)), tokenizer, model.dims.n_text_ctx, config.timestamps, progress=False)
    return collate(examples, model.dims.n_mels, tokenizer.eot, None, None)


def loss_of(model, batch) -> float:
    from tingxie.finetune.forward import batch_loss

    with torch.no_grad():
        return float(batch_loss(model.module, batch, freeze_encoder=True)[0])


def test_training_pass_equals_the_models_decoder(tiny_en_torch, tmp_path: Path) -> None:
    from tingxie.finetune.forward import decoder_logits

    batch = batch_of(base_config(tmp_path), tiny_en_torch)
    with torch.no_grad():
        features = tiny_en_torch.module.embed_audio(batch["mel"])
        ours = decoder_logits(tiny_en_torch.module, batch["tokens"], features)
        theirs = tiny_en_torch.module.logits(batch["tokens"], features)
    assert torch.allclose(ours, theirs, atol=1e-4), float((ours - theirs).abs().max())
    # the prompt carries no loss: the first label is the first text token, after <|notimestamps|>
    tokenizer = tiny_en_torch.tokenizer("en")
    assert batch["tokens"][0, : 2].tolist() == list(tokenizer.sot_sequence_including_notimestamps)
    assert batch["labels"][0, 0] == -100 and batch["labels"][0, 1] == tokenizer.encode(" The")[0]


def test_cached_encoder_features_give_the_same_loss(tiny_en_torch, tmp_path: Path) -> None:
    from tingxie.finetune.forward import batch_loss
    from tingxie.finetune.trainer import Batches

    config = base_config(tmp_path, freeze_encoder=True)
    tokenizer = tiny_en_torch.tokenizer("en")
    from tingxie.finetune.data import read_examples, resolve_rows

    examples = read_examples(resolve_rows(Path(config.train)), tokenizer, tiny_en_torch.dims.n_text_ctx, False, progress=False)
    batches = Batches(examples, config, tiny_en_torch.dims.n_mels, tokenizer.eot)
    assert batches.cacheable and not Batches(examples, replace(config, spec_augment=True), 80, tokenizer.eot).cacheable
    plain = batches.batch(0)
    batches.cache(tiny_en_torch.module)
    cached = batches.batch(0)
    assert "mel" not in cached and torch.equal(cached["labels"], plain["labels"])
    with torch.no_grad():
        a = float(batch_loss(tiny_en_torch.module, plain, freeze_encoder=True)[0])
        b = float(batch_loss(tiny_en_torch.module, cached, freeze_encoder=True)[0])
    assert a == pytest.approx(b, rel=1e-5)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_few_steps_lower_the_loss_and_save_a_loadable_model(tiny_en_torch, tmp_path: Path, method: str) -> None:
    from tingxie import load_model
    from tingxie.finetune import finetune

    config = base_config(tmp_path, method=method, max_steps=6, lr=1e-3 if method == "lora" else 3e-5, save_every=0)
    batch = batch_of(config, tiny_en_torch)
    before = loss_of(tiny_en_torch, batch)
    result = finetune(config, log=lambda _: None)
    assert result.steps == 6
    tuned = load_model(config.out, backend="torch", compute_type="float32")  # the loss is computed in PyTorch, in float32
    after = loss_of(tuned, batch)
    assert after < 0.7 * before, (before, after)
    assert tuned.dims == tiny_en_torch.dims and tuned.alignment_heads == tiny_en_torch.alignment_heads
    changed = [k for k, v in tuned.module.state_dict().items() if not torch.equal(v, tiny_en_torch.module.state_dict()[k])]
    assert changed and all("lora" not in k for k in tuned.module.state_dict())
    text = load_model(config.out).transcribe(str(audio_path("libri_horizon")), temperature=0.0).text  # as users load it
    assert "horizon" in text.lower()
    rows = list(csv.DictReader(open(Path(config.out) / "log.csv", encoding="utf-8")))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))


def test_resume_continues_from_the_saved_step(tiny_en_torch, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from tingxie.finetune import finetune
    from tingxie.finetune.checkpoints import list_checkpoints

    config = base_config(tmp_path, method="lora", max_steps=4, save_every=2, keep_checkpoints=3, spec_augment=True, lora_dropout=0.1)
    whole = finetune(config, log=lambda _: None)
    assert [p.name for p in list_checkpoints(config.out)] == ["step-00000002", "step-00000004"]
    uninterrupted = load_file(str(Path(config.out) / "model.safetensors"))

    # as if killed after the checkpoint at step 2: later state and the model are gone
    import shutil

    shutil.rmtree(Path(config.out) / "checkpoints" / "step-00000004")
    (Path(config.out) / "model.safetensors").unlink()
    messages: list[str] = []
    resumed = finetune(config, log=messages.append)
    assert resumed.resumed_from == 2 and resumed.steps == 4
    assert any("resuming from" in m and "step 2" in m for m in messages)
    rows = list(csv.DictReader(open(Path(config.out) / "log.csv", encoding="utf-8")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    again = load_file(str(Path(config.out) / "model.safetensors"))
    # same data order, masks, dropout and optimizer state: the resumed run ends where the whole one did
    for name, tensor in uninterrupted.items():
        assert torch.allclose(again[name], tensor, atol=1e-6), name
    assert whole.last_loss == pytest.approx(resumed.last_loss, rel=1e-5)


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    from tingxie.errors import CheckpointError
    from tingxie.finetune import finetune

    config = base_config(tmp_path, method="lora", max_steps=1, freeze_encoder=True)
    finetune(config, log=lambda _: None)
    with pytest.raises(CheckpointError, match="lora_rank"):
        finetune(replace(config, lora_rank=4, max_steps=2), log=lambda _: None)


def test_saved_names_are_the_hugging_face_names_the_loader_maps_back() -> None:
    from tingxie.finetune.export import huggingface_name
    from tingxie.weights.canonical import canonical_names
    from tingxie.weights.huggingface import canonical_name

    for name in canonical_names(4, 4):
        assert canonical_name(huggingface_name(name)) == name


def test_cli_help_and_bad_manifest(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "tingxie", "finetune"]
    shown = subprocess.run([*run, "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert shown.returncode == 0 and "--lora_rank" in shown.stdout and "(default: 16)" in shown.stdout
    bad = tmp_path / "bad.tsv"
    bad.write_text("path\tsentence\nx.wav\thello\n", encoding="utf-8")
    failed = subprocess.run([*run, "--train", str(bad), "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr and "audio" in failed.stderr


def test_mix_states_interpolates_and_refuses_other_models() -> None:
    from tingxie.errors import OptionError
    from tingxie.finetune.mix import mix_states

    base = {"a": torch.zeros(2, 3), "b": torch.ones(4)}
    tuned = {"a": torch.full((2, 3), 2.0), "b": torch.full((4,), 3.0)}
    assert torch.equal(mix_states(base, tuned, 0.0)["a"], base["a"])
    assert torch.equal(mix_states(base, tuned, 1.0)["b"], tuned["b"])
    half = mix_states(base, tuned, 0.5)
    assert torch.equal(half["a"], torch.ones(2, 3)) and torch.equal(half["b"], torch.full((4,), 2.0))
    with pytest.raises(OptionError, match="different parameters"):
        mix_states(base, {"a": tuned["a"]}, 0.5)
    with pytest.raises(OptionError, match="shape"):
        mix_states(base, {"a": torch.zeros(3, 2), "b": tuned["b"]}, 0.5)


def test_mix_models_writes_a_folder_every_command_loads(tmp_path: Path) -> None:
    # tiny.en mixed with itself is tiny.en: the folder must load and transcribe jfk as the reference does
    out = tmp_path / "mixed"
    run = subprocess.run([sys.executable, "-m", "tingxie", "mix-models", "tiny.en", "tiny.en", "--weight", "0.3", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    from tingxie import load_model

    text = load_model(str(out), compute_type="float32").transcribe(str(audio_path("jfk")), temperature=0.0).text  # the reference switch
    assert text == golden("jfk.greedy")["text"]
    bad = subprocess.run([sys.executable, "-m", "tingxie", "mix-models", "tiny.en", "tiny.en", "--weight", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "weight must be in [0, 1]" in bad.stderr
