"""The ``tingxie practice`` sub-command: score a recording against the sentence the learner meant to say.

Importing this module is cheap (argparse only); the model and torch are imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "practice",
        help="pronunciation practice: which words of a sentence were said well, unclearly, left out or replaced",
        description="Align the text the learner meant to say with their recording (forcing the decoder through the "
        "text's tokens) and compare it with a free transcription: per word its time span, the model's probability, "
        "and a verdict (ok, unclear, missed, replaced by X); then an overall score and the words to repeat.",
    )
    p.add_argument("audio", help="the recording: a sentence or two, at most 30 s (any format ffmpeg decodes)")
    p.add_argument("--text", required=True, help="what the learner meant to say (required)")
    p.add_argument("--language", default=None, help="language of the text, code or name (default: None: English for an English-only model, detected otherwise)")
    p.add_argument("--model", default="tiny.en", help="model name or path; a multilingual one (base) for languages other than English (default: tiny.en)")
    p.add_argument("--model_dir", default=None, help="cache folder for downloaded models (default: $TINGXIE_CACHE or ~/.cache/tingxie)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps or auto (default: cpu)")
    p.add_argument("--format", default="table", choices=["table", "json", "html"], help="report format (default: table)")
    p.add_argument("--output", "-o", default=None, help="write the report to this file instead of stdout (default: None, stdout)")
    p.add_argument("--unclear_below", type=float, default=0.25,
                   help="a word heard as written but with a lower probability than this is unclear (default: 0.25)")
    p.add_argument("--accept_above", type=float, default=0.75, help="a word heard otherwise but with at least this probability is still ok (default: 0.75)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import TingxieError

    if not any(ch.isalnum() for ch in args.text):  # before the model loads: say it at once
        print(f"tingxie: error: the text {args.text!r} has no words to practise", file=sys.stderr)
        return 2
    try:
        from ..api import load_model
        from ..audio import decode_audio
        from ..practice import PracticeOptions, practice, render

        options = PracticeOptions(unclear_below=args.unclear_below, accept_above=args.accept_above)
        samples = decode_audio(args.audio)
        model = load_model(args.model, device=args.device, cache_dir=args.model_dir)
        result = practice(model, samples, args.text, language=args.language, options=options)
        report = render(result, args.format, samples if args.format == "html" else None)
    except TingxieError as e:
        print(f"tingxie: error: {e}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(report)
        return 0
    try:
        write_atomic(args.output, report)
    except OSError as e:
        print(f"tingxie: error: cannot write {args.output}: {e}", file=sys.stderr)
        return 2
    print(f"{args.output}: score {result.score:g} / 100", file=sys.stderr)
    return 0


def write_atomic(path: str, text: str) -> None:
    import os
    import tempfile
    from pathlib import Path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # a report to open and share, not mkstemp's private 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
