"""``tingxie eval``: WER, CER and term recall of a model on a manifest, printed and written as JSON.

Importing this module is cheap (argparse only); the model, torch and jiwer load when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..options import COMPUTE_TYPES, DecodingOptions, TranscribeOptions
from .main import _add_dataclass_options, optional


def _add_decoding(parser: argparse.ArgumentParser | Any) -> None:
    """The decoding and transcription options of ``tingxie transcribe``, with the same defaults."""
    _add_dataclass_options(parser, DecodingOptions)
    parser.add_argument("--temperature", type=float, default=0.0, help="temperature to start sampling at (default: 0)")
    parser.add_argument("--temperature_increment_on_fallback", type=optional(float), default=0.2,
                        help="temperature added at each fallback when a window fails the thresholds; None disables fallback (default: 0.2)")
    _add_dataclass_options(parser, TranscribeOptions)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="word and character error rates of a model on a manifest of recordings and their text",
        description="Transcribe every utterance of MANIFEST and score it against its text with jiwer after normalisation "
        "(Whisper's English normaliser for English; NFKC, lower-case and no punctuation for other languages; Chinese, "
        "Japanese, Thai ... by characters). Prints a per-utterance table and totals; --report writes them as JSON.",
        epilog="MANIFEST: a TSV/CSV file whose header row names 'audio' and 'text' (optional: 'language'; 'terms', domain "
        "terms separated by |), or JSON Lines with those keys. Audio paths are relative to the manifest's folder. "
        "Compare two configurations: --compare_model DIR and/or --compare_option beam_size=5 --compare_option "
        "initial_prompt='ComfyUI, LoRA' run the manifest a second time with those changes and print both and the difference.",
    )
    p.add_argument("manifest", help="TSV/CSV with a header naming audio and text columns, or JSONL with those keys")
    p.add_argument("--model", default="tiny.en", help="model name or path to a checkpoint or folder (default: tiny.en, embedded)")
    p.add_argument("--model_dir", default=None, help="cache folder for downloaded models (default: $TINGXIE_CACHE or ~/.cache/tingxie)")
    p.add_argument("--device", default="auto", help="torch device: cpu, cuda, mps or auto (default: auto)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="precision; auto is float16 on GPU, float32 on CPU (default: auto)")
    p.add_argument("--compute_type", default="auto", choices=COMPUTE_TYPES,
                   help="auto is the fast engine (int8 on a CPU); float32 gives the reference's outputs (default: auto)")
    p.add_argument("--report", default=None, help="write the JSON report (totals and one entry per utterance) to this file (default: none)")
    p.add_argument("--terms", default=None, help="file of domain terms, one a line: term recall over the rows whose reference contains them; "
                   "a manifest 'terms' column takes precedence for its rows (default: none)")
    p.add_argument("--quiet", action="store_true", help="print only the totals, not the per-utterance table (default: off)")
    p.add_argument("--progress", type=_bool, default=True, help="show a progress bar on stderr (default: True)")
    p.add_argument("--compare_model", default=None, help="a second model to evaluate on the same manifest (default: none)")
    p.add_argument("--compare_option", action="append", default=[], metavar="NAME=VALUE",
                   help="an option changed for the second run, e.g. beam_size=5 or initial_prompt=ComfyUI; repeatable (default: none)")
    _add_decoding(p.add_argument_group("decoding (as tingxie transcribe)"))
    p.set_defaults(handler=run)


def _bool(value: str) -> bool:
    from .main import str2bool

    return str2bool(value)


_OWN = {"command", "handler", "manifest", "model", "model_dir", "device", "dtype", "compute_type", "report", "terms", "quiet", "progress",
        "compare_model", "compare_option", "temperature", "temperature_increment_on_fallback"}


def options_from(values: dict[str, Any]) -> TranscribeOptions:
    from ..options import build_options, temperature_schedule

    kwargs = {k: v for k, v in values.items() if k not in _OWN}
    kwargs["temperature"] = temperature_schedule(values["temperature"], values["temperature_increment_on_fallback"])
    return build_options(**kwargs)


def compare_values(values: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """The main run's option values with NAME=VALUE changes parsed exactly as the command line parses --NAME VALUE."""
    from ..errors import OptionError

    parser = argparse.ArgumentParser(prog="--compare_option", add_help=False, exit_on_error=False)
    _add_decoding(parser)
    argv = []
    for change in changes:
        name, sep, value = change.partition("=")
        if not sep or not name.strip():
            raise OptionError(f"--compare_option takes NAME=VALUE, got {change!r}")
        argv += [f"--{name.strip().lstrip('-')}", value]
    try:
        parsed, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:
        raise OptionError(f"--compare_option: {e}") from e
    if unknown:
        raise OptionError(f"--compare_option: unknown option {unknown[0].lstrip('-')!r}")
    given = {a.lstrip("-") for a in argv[::2]}
    return {**values, **{k: v for k, v in vars(parsed).items() if k in given}}


def run(args: argparse.Namespace) -> int:
    return run_guarded("eval", _run, args)


def run_guarded(command: str, body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``body(args)`` with a TingxieError as one line on stderr (exit 2) and Ctrl-C as exit 130: eval's and tune's run."""
    from ..errors import TingxieError

    try:
        return body(args)
    except TingxieError as e:
        print(f"tingxie {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from ..api import load_model
    from ..evaluate import evaluate, format_summary, format_table, read_manifest, read_terms, write_report

    values = vars(args)
    options = options_from(values)
    second = options_from(compare_values(values, args.compare_option)) if args.compare_option or args.compare_model else None
    rows = read_manifest(args.manifest)
    vocabulary = read_terms(args.terms) if args.terms else None
    model = load_model(args.model, device=args.device, dtype=args.dtype, cache_dir=args.model_dir, compute_type=args.compute_type)
    report = evaluate(model, rows, options, progress=args.progress, vocabulary=vocabulary, manifest=args.manifest)
    if not args.quiet:
        print(format_table(report))
    if second is None:
        print(format_summary(report))
    data = report.to_dict()
    if second is not None:
        other = (load_model(args.compare_model, device=args.device, dtype=args.dtype, cache_dir=args.model_dir, compute_type=args.compute_type)
                 if args.compare_model else model)
        report_b = evaluate(other, rows, second, progress=args.progress, vocabulary=vocabulary, manifest=args.manifest, desc="evaluating B")
        if not args.quiet:
            print(format_comparison(report, report_b))
        print(format_summary(report, "A "))
        print(format_summary(report_b, "B "))
        difference = {k: (None if report_b.summary()[k] is None or report.summary()[k] is None else report_b.summary()[k] - report.summary()[k])
                      for k in ("wer", "cer", "term_recall")}
        print("B - A: " + "  ".join(f"{k} {100 * v:+.2f} points" for k, v in difference.items() if v is not None))
        data["compare"] = {"changes": args.compare_option, **report_b.to_dict()}
        data["difference"] = difference
    if args.report:
        print(f"report: {write_report(data, args.report)}", file=sys.stderr)
    return 0


def format_comparison(a, b) -> str:
    """The utterances whose WER differs between the two runs."""
    lines = [f"{'#':>4}  {'WER A':>6}  {'WER B':>6}  audio"]
    for i, (ua, ub) in enumerate(zip(a.utterances, b.utterances), start=1):
        if ua.score.wer != ub.score.wer or ua.score.hypothesis != ub.score.hypothesis:
            lines.append(f"{i:>4}  {ua.score.wer:6.1%}  {ub.score.wer:6.1%}  {ua.row.audio.name}")
            lines.append(f"{'':>6}A: {ua.score.hypothesis}")
            lines.append(f"{'':>6}B: {ub.score.hypothesis}")
    return "\n".join(lines) if len(lines) > 1 else "the two runs transcribed every utterance alike"
