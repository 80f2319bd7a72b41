"""`tingxie transcribe --diarize True`: the transcribe command's loop, each file's result given its speakers before
it is written (the plain command lives in commands.py; this edge only adds the diarization step)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .errors import TingxieError


def diarize_command(args: dict[str, Any]) -> int:
    """Transcribe and diarize each file; a failed file is named with its reason and the others still finish."""
    from . import commands
    from .audio import decode_audio
    from .diarization import diarize_result
    from .diarization.apply import settings_from_options
    from .writers import SubtitleOptions, write_result

    try:
        options = commands.options_from_args(args)
        subtitle = SubtitleOptions(max_line_width=args["max_line_width"], max_line_count=args["max_line_count"],
                                   highlight_words=args["highlight_words"], max_words_per_line=args["max_words_per_line"])
        references = settings_from_options(options).speaker_references  # a bad reference stops the run before any model work
        from .diarization import load_encoder

        load_encoder(args["model_dir"])  # a missing speaker model too (and its one-time export happens here)
        model = commands.load_cli_model(args)
    except TingxieError as e:
        print(f"tingxie: error: {e}", file=sys.stderr)
        return 2
    failures: list[tuple[str, str]] = []
    for path in args["audio"]:
        try:
            samples = decode_audio(path)
            result = commands._transcribe_one(model, path, options, args["verbose"], args["progress"], args.get("batch_size") or 0, samples)
            progress = args["progress"] if args["progress"] is not None else sys.stderr.isatty()  # None: auto, on a terminal
            result = diarize_result(model, samples, result, options, progress=progress, references=references)
            write_result(result.to_dict(), path, Path(args["output_dir"]), args["output_format"], subtitle)
            if not result.text.strip():
                failures.append((path, "no speech detected (the outputs were written, empty)"))
        except TingxieError as e:
            failures.append((path, str(e)))
        except OSError as e:
            failures.append((path, f"{type(e).__name__}: {e}"))
    for path, reason in failures:
        print(f"tingxie: {path}: {reason}", file=sys.stderr)
    return 1 if failures else 0
