"""The ``tingxie detect-language`` sub-command: the spoken language of a file, with probabilities.

Importing this module is cheap (argparse only); the model and torch are imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detect-language",
        help="say which language is spoken in audio files, with the probability of each",
        description="Whisper's language identification on the first 30 s of each file (or on every 30-s window "
        "with --per_window True), printing the most likely languages and their probabilities.",
    )
    p.add_argument("audio", nargs="+", help="audio or video files (any format ffmpeg decodes)")
    p.add_argument("--model", default="base", help="a multilingual model name or path (default: base)")
    p.add_argument("--model_dir", default=None, help="cache folder for downloaded models (default: $TINGXIE_CACHE or ~/.cache/tingxie)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps or auto (default: cpu)")
    p.add_argument("--top", type=int, default=5, help="how many of the most likely languages to show (default: 5)")
    p.add_argument("--per_window", type=_bool, default=False, help="detect every 30-s window, not just the first (default: False)")
    p.add_argument("--format", default="text", choices=["text", "json"], help="output format (default: text)")
    p.set_defaults(handler=run)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def run(args: argparse.Namespace) -> int:
    from ..errors import TingxieError

    if args.top < 1:
        print("tingxie: error: --top must be at least 1", file=sys.stderr)
        return 2
    try:
        from ..api import load_model

        model = load_model(args.model, device=args.device, cache_dir=args.model_dir)
        if not model.is_multilingual:
            raise TingxieError(f"{args.model} is English-only and cannot identify languages; use a multilingual model such as base")
    except TingxieError as e:
        print(f"tingxie: error: {e}", file=sys.stderr)
        return 2
    reports, failed = [], 0
    for path in args.audio:
        try:
            reports.append(detect_file(model, path, args.top, args.per_window))
        except TingxieError as e:
            print(f"tingxie: {path}: {e}", file=sys.stderr)
            failed += 1
    if args.format == "json":
        import json

        print(json.dumps(reports if len(args.audio) > 1 else (reports[0] if reports else {}), ensure_ascii=False, indent=2))
    else:
        for report in reports:
            print(_text(report))
    return 1 if failed else 0


def detect_file(model, path: str, top: int, per_window: bool) -> dict:
    """{"file", "language", "language_name", "probabilities" (top), "windows" (per_window only)}."""
    from ..audio import N_SAMPLES, decode_audio
    from ..tokenizer import LANGUAGES

    samples = decode_audio(path)

    def detect(part) -> dict:
        code, probs = model.detect_language(part)
        best = dict(sorted(probs.items(), key=lambda kv: -kv[1])[:top])
        return {"language": code, "language_name": LANGUAGES[code], "probabilities": {k: round(v, 6) for k, v in best.items()}}

    report = {"file": path, **detect(samples)}
    if per_window:
        starts = range(0, max(samples.size, 1), N_SAMPLES)
        # a last window shorter than a second is too short to tell a language by
        report["windows"] = [{"start": s / 16000, **detect(samples[s : s + N_SAMPLES])} for s in starts if samples[s : s + N_SAMPLES].size >= 16000 or s == 0]
    return report


def _text(report: dict) -> str:
    def line(d: dict) -> str:
        return ", ".join(f"{code} {p:.1%}" for code, p in d["probabilities"].items())

    out = [f"{report['file']}: {report['language']} ({report['language_name']})  [{line(report)}]"]
    for w in report.get("windows", []):
        out.append(f"  {w['start']:7.1f} s: {w['language']} ({w['language_name']})  [{line(w)}]")
    return "\n".join(out)
