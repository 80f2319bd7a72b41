"""``tingxie finetune``: argparse only at import; the training code loads when the command runs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING

from ..cli import optional as _optional
from ..cli import str2bool as _bool

# the dataclass is small and stdlib-only, so its fields drive the options and their help texts
_TYPES = {"bool": _bool, "float": float, "int": int, "str": str, "int | None": _optional(int), "float | None": _optional(float), "str | None": _optional(str)}


def register(subparsers) -> None:
    from .config import config_fields

    p = subparsers.add_parser(
        "finetune", help="fine-tune a model (full or LoRA) on your own recordings",
        description="Fine-tune Whisper on a manifest of (audio, text) pairs; evaluate before and after; "
                    "save a model folder that --model DIR and tingxie.load_model(DIR) load. "
                    "Run the same command again to resume an interrupted run.",
    )
    p.add_argument("--train", required=True, help="training manifest: TSV/CSV with a header naming 'audio' and 'text', or JSONL (required)")
    p.add_argument("--eval", action="append", default=[], metavar="MANIFEST",
                   help="manifest to evaluate before and after training; repeat for several (default: none)")
    p.add_argument("--out", required=True, help="output folder for the model, checkpoints, log.csv and reports (required)")
    for f in config_fields():
        default = f.default if f.default is not MISSING else None
        kind = _TYPES.get(str(f.type), str)
        extra = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
        p.add_argument(f"--{f.name}", type=kind, default=default, help=f"{f.metadata['help']} (default: {default})", **extra)
    p.set_defaults(handler=run)

    m = subparsers.add_parser(
        "mix-models", help="mix a fine-tuned model with its base (WiSE-FT): keep the domain, give back general accuracy",
        description="Write BASE + weight * (TUNED - BASE) as a model folder (weight-space ensembling, WiSE-FT). "
                    "A weight of 0.5-0.8 usually keeps most of a fine-tuning's gain on its domain and most of the "
                    "base model's accuracy elsewhere; measure both with tingxie eval.",
    )
    m.add_argument("base", help="the model that was fine-tuned: a name (tiny.en) or a path")
    m.add_argument("tuned", help="the fine-tuned model folder (tingxie finetune --out)")
    m.add_argument("--weight", type=float, default=0.7, help="share of the fine-tuned change to keep, 0 (base) to 1 (tuned) (default: 0.7)")
    m.add_argument("--out", required=True, help="output folder for the mixed model (required)")
    m.set_defaults(handler=run_mix)


def run_mix(args: argparse.Namespace) -> int:
    from ..errors import TingxieError
    from .mix import mix_models

    try:
        folder = mix_models(args.base, args.tuned, args.weight, args.out)
    except TingxieError as e:
        print(f"tingxie mix-models: error: {e}", file=sys.stderr)
        return 2
    print(f"{folder}: {args.base} + {args.weight:g} x ({args.tuned} - {args.base}); load it with --model {folder}")
    return 0


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from ..errors import TingxieError
    from .config import FinetuneConfig

    values = {f.name: getattr(args, f.name) for f in fields(FinetuneConfig) if hasattr(args, f.name)}
    values["eval"] = tuple(args.eval)
    try:
        config = FinetuneConfig(**values)
        from .trainer import finetune

        result = finetune(config, log=lambda message: print(message, file=sys.stderr))
    except TingxieError as e:
        print(f"tingxie finetune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"{result.out}: {result.steps} steps, loss {result.first_loss:.3f} -> {result.last_loss:.3f}" if result.first_loss is not None
          else f"{result.out}: nothing left to train ({result.steps} steps)")
    return 0
