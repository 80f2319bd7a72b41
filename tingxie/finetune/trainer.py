"""The fine-tuning loop: data, optimizer, schedule, checkpoints, log, export and evaluations."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import OptionError
from .checkpoints import TrainState, check_compatible, list_checkpoints, load_state, save_state
from .config import FinetuneConfig
from .data import Example, collate, collate_tokens, epoch_order, read_examples, resolve_rows, window_mel
from .forward import batch_loss, encode_all

LOG_FIELDS = ("step", "epoch", "loss", "tokens", "lr", "grad_norm", "elapsed_s")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class FinetuneResult:
    out: Path
    steps: int
    first_loss: float | None
    last_loss: float | None
    seconds: float
    resumed_from: int | None = None
    evaluations: dict = field(default_factory=dict)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


class Batches:
    """Micro-batches in a fixed order: epoch ``e`` is a seeded shuffle, so position ``i`` is always the same batch."""

    def __init__(self, examples: list[Example], config: FinetuneConfig, n_mels: int, eot: int):
        self.examples, self.config, self.n_mels, self.eot = examples, config, n_mels, eot
        self.per_epoch = math.ceil(len(examples) / config.batch_size)
        self.augment = None
        if config.spec_augment:
            self.augment = {k: getattr(config, k) for k in ("freq_masks", "freq_width", "time_masks", "time_width")}
        self.features: list[torch.Tensor] | None = None

    @property
    def cacheable(self) -> bool:
        """A frozen encoder sees the same mel every epoch unless SpecAugment masks it, so its output can be reused."""
        return self.config.cache_features and self.config.freeze_encoder and self.augment is None

    def cache(self, module: torch.nn.Module) -> None:
        mels = (window_mel(e.audio, self.n_mels)[0] for e in self.examples)
        self.features = encode_all(module, mels, self.config.batch_size)

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        epoch, position = divmod(index, self.per_epoch)
        order = epoch_order(len(self.examples), self.config.seed, epoch)
        chosen = order[position * self.config.batch_size : (position + 1) * self.config.batch_size]
        if self.features is not None:
            return {"features": torch.stack([self.features[i] for i in chosen]), **collate_tokens([self.examples[i] for i in chosen], self.eot)}
        # SpecAugment's masks depend on the batch's index only, so a resumed run masks the same way
        generator = torch.Generator().manual_seed(self.config.seed * 7919 + index)
        return collate([self.examples[i] for i in chosen], self.n_mels, self.eot, generator, self.augment)

    def epoch_of(self, micro_batches: int) -> float:
        return micro_batches / self.per_epoch


def _prepare_model(config: FinetuneConfig, module: torch.nn.Module) -> torch.nn.Module:
    if config.method == "lora":
        from .lora import add_lora

        module = add_lora(module, config)
    else:
        for name, parameter in module.named_parameters():
            parameter.requires_grad_(not (config.freeze_encoder and name.startswith("encoder.")))
    # the encoder's positions are fixed sinusoids; a buffer, never trained
    return module.train()


def _trainable(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}


def _log_writer(path: Path, resume_step: int) -> tuple[csv.DictWriter, object]:
    """The CSV log, with rows past the resumed step dropped so the file shows one history."""
    rows = []
    if resume_step and path.is_file():
        with open(path, encoding="utf-8", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
    f = open(path, "w", encoding="utf-8", newline="")
    writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    f.flush()
    return writer, f


def _tensorboard(config: FinetuneConfig, out: Path):
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise OptionError("--tensorboard needs the tensorboard package (pip install tensorboard)") from e
    return SummaryWriter(str(out / "tensorboard"))


def finetune(config: FinetuneConfig, *, log: Callable[[str], None] = print) -> FinetuneResult:
    """Run (or resume) fine-tuning as configured; writes the model, checkpoints, log and reports into ``config.out``."""
    from ..api import resolve_device
    from ..model import build_model
    from ..tokenizer import get_tokenizer
    from ..weights import load_checkpoint
    from .evals import evaluate_all

    started = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    if config.precision == "fp16" and device.type == "cpu":
        raise OptionError("fp16 autocast needs a GPU; use --precision bf16 or float32 on the CPU")

    checkpoint = load_checkpoint(config.model)
    dims, heads = checkpoint.dims, checkpoint.alignment_heads
    module = build_model(checkpoint, device=device, dtype=torch.float32)
    del checkpoint
    tokenizer = get_tokenizer(dims.is_multilingual, num_languages=dims.num_languages, language=config.language,
                              task=config.task if dims.is_multilingual else None)
    examples = read_examples(resolve_rows(Path(config.train)), tokenizer, dims.n_text_ctx, config.timestamps, progress=config.progress)
    batches = Batches(examples, config, dims.n_mels, tokenizer.eot)
    total = config.max_steps or max(1, math.ceil(config.epochs * batches.per_epoch / config.grad_accum))

    saved = list_checkpoints(out) if config.resume else []
    state = load_state(saved[-1]) if saved else None
    if state is not None:
        check_compatible(state.config, config, saved[-1])
    result = FinetuneResult(out=out, steps=0, first_loss=None, last_loss=None, seconds=0.0, resumed_from=state.step if state else None)

    if config.eval and config.eval_before and state is None:
        result.evaluations["before"] = evaluate_all(module, config, out / "eval_before.json", log=log, heads=heads)

    module = _prepare_model(config, module)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.peak_lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config.warmup_steps, total, config.schedule))
    scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
    step, elapsed_before = 0, 0.0
    if state is not None:
        missing = set(_trainable(module)) - set(state.parameters)
        if missing:
            raise OptionError(f"the checkpoint {saved[-1]} lacks {sorted(missing)[:2]}: it is of another model or method")
        module.load_state_dict(state.parameters, strict=False)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        if scaler is not None and state.scaler:
            scaler.load_state_dict(state.scaler)
        torch.set_rng_state(state.rng)
        step, elapsed_before = state.step, state.elapsed
        log(f"resuming from {saved[-1]} (step {step} of {total})")

    trained = sum(p.numel() for p in params)
    log(f"fine-tuning {config.model} ({config.method}, {trained:,} trainable parameters) on {len(examples)} utterances: "
        f"{total} steps of {config.batch_size}x{config.grad_accum}, lr {config.peak_lr:g}, {device}")

    autocast = torch.autocast(device.type, dtype=_AUTOCAST[config.precision]) if config.precision in _AUTOCAST else contextlib.nullcontext()
    if batches.cacheable and step < total:
        t0 = time.monotonic()
        with autocast:
            batches.cache(module)
        log(f"encoded the {len(examples)} utterances once (frozen encoder, no SpecAugment) in {time.monotonic() - t0:.0f} s")

    def snapshot(at: int) -> Path:
        return save_state(out, TrainState(
            step=at, parameters=_trainable(module), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict() if scaler else None, rng=torch.get_rng_state(), config=config.to_dict(),
            elapsed=elapsed_before + time.monotonic() - started,
        ), config.keep_checkpoints)

    writer, log_file = _log_writer(out / "log.csv", step)
    board = _tensorboard(config, out)
    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc="fine-tuning", unit="step", disable=not config.progress)
    try:
        while step < total:
            optimizer.zero_grad(set_to_none=True)
            loss_sum, tokens = 0.0, 0
            for micro in range(config.grad_accum):
                batch = batches.batch(step * config.grad_accum + micro)
                with autocast:
                    loss, n = batch_loss(module, batch, freeze_encoder=config.freeze_encoder)
                scaled = loss / config.grad_accum
                (scaler.scale(scaled) if scaler else scaled).backward()
                loss_sum += float(loss.detach()) / config.grad_accum
                tokens += n
            if scaler:
                scaler.unscale_(optimizer)
            norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm if config.max_grad_norm > 0 else float("inf"))
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            step += 1
            result.first_loss = loss_sum if result.first_loss is None else result.first_loss
            result.last_loss = loss_sum
            row = {"step": step, "epoch": f"{batches.epoch_of(step * config.grad_accum):.3f}", "loss": f"{loss_sum:.5f}", "tokens": tokens,
                   "lr": f"{lr:.3e}", "grad_norm": f"{float(norm):.4f}", "elapsed_s": f"{elapsed_before + time.monotonic() - started:.1f}"}
            writer.writerow(row)
            log_file.flush()
            if board is not None:
                board.add_scalar("train/loss", loss_sum, step)
                board.add_scalar("train/lr", lr, step)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.1e}")
            if config.save_every and step % config.save_every == 0 and step < total:
                snapshot(step)
    except KeyboardInterrupt:
        path = snapshot(step)
        log(f"interrupted: saved {path}; run the same command again to resume from step {step}")
        raise
    finally:
        bar.close()
        log_file.close()
        if board is not None:
            board.close()
    snapshot(step)

    model_file = _export(module, config, dims, heads, out, step)
    log(f"saved the fine-tuned model to {model_file.parent} (load it with --model {model_file.parent})")
    result.steps = step
    result.seconds = elapsed_before + time.monotonic() - started
    if config.eval and config.eval_after:
        from ..api import load_model

        tuned = load_model(out, device=device, dtype="float32")  # evaluate what was written, as a user would load it
        result.evaluations["after"] = evaluate_all(tuned, config, out / "eval_after.json", log=log)
    _write_summary(out / "finetune.json", config, result)
    return result


def _export(module: torch.nn.Module, config: FinetuneConfig, dims, heads, out: Path, step: int) -> Path:
    from .export import save_model
    from .lora import merge_lora

    if config.method == "lora":
        module = merge_lora(module)
    module.eval()
    state = {k: v for k, v in module.state_dict().items()}
    extra = {"tingxie_finetune": {"base_model": config.model, "method": config.method, "steps": step}}
    return save_model(state, dims, heads, out, extra=extra)


def _write_summary(path: Path, config: FinetuneConfig, result: FinetuneResult) -> None:
    data = {
        "config": config.to_dict(), "steps": result.steps, "first_loss": result.first_loss, "last_loss": result.last_loss,
        "seconds": round(result.seconds, 1), "resumed_from": result.resumed_from, "evaluations": result.evaluations,
    }
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)

