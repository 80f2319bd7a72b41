"""Fine-tuning settings: one frozen dataclass, shared by the CLI and the Python API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import OptionError

METHODS = ("lora", "full")
PRECISIONS = ("float32", "bf16", "fp16")
SCHEDULES = ("linear", "cosine", "constant")
# Learning rates that suit each method when none is given: LoRA's small new matrices take a large step.
DEFAULT_LR = {"lora": 1e-3, "full": 1e-5}


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything a fine-tuning run depends on; saved beside each checkpoint to check a resume."""

    train: str = _opt("", "manifest of training utterances (TSV/CSV with audio and text columns, or JSONL)")
    out: str = _opt("", "output folder: the fine-tuned model, checkpoints, log.csv and evaluation reports")
    eval: tuple[str, ...] = _opt((), "manifests evaluated before and after training")
    model: str = _opt("tiny.en", "model to start from: a name or a checkpoint path")
    method: str = _opt("lora", "lora (low-rank adapters merged into the weights on save) or full", choices=METHODS)
    language: str | None = _opt(None, "language of the training speech for multilingual models; English-only models need none")
    task: str = _opt("transcribe", "task token of the prompt", choices=("transcribe", "translate"))
    timestamps: bool = _opt(False, "predict <|0.00|> ... <|end|> timestamps around each utterance's text instead of <|notimestamps|>")
    epochs: float = _opt(3.0, "passes over the training set (fractions allowed)")
    max_steps: int | None = _opt(None, "stop after this many optimizer steps (overrides epochs)")
    batch_size: int = _opt(8, "utterances per forward pass")
    grad_accum: int = _opt(1, "forward passes summed into one optimizer step")
    lr: float | None = _opt(None, "peak learning rate; default 1e-3 for lora, 1e-5 for full")
    warmup_steps: int = _opt(10, "optimizer steps of linear learning-rate warm-up")
    schedule: str = _opt("linear", "learning-rate decay after the warm-up", choices=SCHEDULES)
    weight_decay: float = _opt(0.01, "AdamW weight decay")
    max_grad_norm: float = _opt(1.0, "clip the gradient norm to this (0: no clipping)")
    lora_rank: int = _opt(16, "rank of the LoRA matrices")
    lora_alpha: float = _opt(32.0, "LoRA scaling numerator (scale = alpha / rank)")
    lora_dropout: float = _opt(0.05, "dropout on the LoRA input")
    lora_targets: str = _opt("query,key,value,out", "comma-separated names of the linear layers that get adapters (query, key, value, out, mlp.0, mlp.2)")
    freeze_encoder: bool = _opt(False, "train only the decoder (the encoder runs without gradients: faster, keeps the acoustics)")
    cache_features: bool = _opt(True, "with a frozen encoder and SpecAugment off, run the encoder once per utterance and keep its output in memory (2.3 MB an "
                                      "utterance for tiny, 7.7 MB for large)")
    spec_augment: bool = _opt(True, "mask random frequency bands and time spans of the log-mel (SpecAugment)")
    freq_masks: int = _opt(2, "SpecAugment frequency masks per utterance")
    freq_width: int = _opt(12, "widest frequency mask, in mel bins")
    time_masks: int = _opt(2, "SpecAugment time masks per utterance")
    time_width: float = _opt(0.05, "widest time mask, as a fraction of the utterance")
    precision: str = _opt("float32", "autocast precision of the forward pass (weights stay float32)", choices=PRECISIONS)
    device: str = _opt("auto", "torch device: cpu, cuda, cuda:1, mps or auto")
    threads: int | None = _opt(None, "CPU threads for torch (default: torch's choice)")
    save_every: int = _opt(50, "write a resumable checkpoint every this many optimizer steps (0: only at the end)")
    keep_checkpoints: int = _opt(2, "newest checkpoints kept; older ones are deleted")
    resume: bool = _opt(True, "continue from the newest checkpoint in OUT when there is one")
    eval_before: bool = _opt(True, "evaluate the starting model on the eval manifests")
    eval_after: bool = _opt(True, "evaluate the fine-tuned model on the eval manifests")
    terms: str | None = _opt(None, "file of domain terms, one a line, for term recall in the evaluations")
    tensorboard: bool = _opt(False, "also write a TensorBoard log to OUT/tensorboard (needs the tensorboard package)")
    seed: int = _opt(0, "seed for data order, adapters, dropout and SpecAugment")
    progress: bool = _opt(True, "show a progress bar")

    def __post_init__(self) -> None:
        if not self.train:
            raise OptionError("a training manifest is needed (--train)")
        if not self.out:
            raise OptionError("an output folder is needed (--out)")
        if self.method not in METHODS:
            raise OptionError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.precision not in PRECISIONS:
            raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise OptionError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        for name in ("batch_size", "grad_accum", "lora_rank"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.epochs <= 0 and not self.max_steps:
            raise OptionError(f"epochs must be positive, not {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise OptionError(f"max_steps must be at least 1, not {self.max_steps}")
        if self.lr is not None and self.lr <= 0:
            raise OptionError(f"lr must be positive, not {self.lr}")
        if not 0 <= self.time_width < 1:
            raise OptionError(f"time_width is a fraction of the utterance in [0, 1), not {self.time_width}")
        if isinstance(self.eval, str):
            object.__setattr__(self, "eval", (self.eval,))

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def target_modules(self) -> list[str]:
        return [t.strip() for t in self.lora_targets.split(",") if t.strip()]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["eval"] = list(self.eval)
        return data

    # settings that change what a checkpoint's numbers mean: a resume must agree on them
    RESUME_KEYS = ("train", "model", "method", "language", "task", "timestamps", "batch_size", "grad_accum",
                   "lora_rank", "lora_alpha", "lora_targets", "freeze_encoder", "seed")


def config_fields() -> list:
    """The dataclass fields, for building the CLI."""
    return [f for f in fields(FinetuneConfig) if f.name not in ("train", "out", "eval")]
