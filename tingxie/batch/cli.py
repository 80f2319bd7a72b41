"""The ``tingxie batch`` sub-command: every ``tingxie transcribe`` option, plus the job's own.

Importing this module is cheap (argparse only); the driver is imported when the command runs.
"""

from __future__ import annotations

import argparse
import copy
import signal
import sys
from functools import partial
from typing import Any

# Transcribe options whose meaning changes for a whole job: (help, default) or None to leave out.
_BATCH_MEANING = {
    "audio": None,
    "help": None,
    "verbose": ("print each file's transcript as it finishes", False),
    "progress": ("show the job's progress on stderr: files, hours of audio, ETA", True),
    "threads": ("torch CPU threads per worker; 0 shares the cores out among the workers", 0),
}


def _copy_transcribe_options(parser: argparse.ArgumentParser, transcribe: argparse.ArgumentParser) -> frozenset[str]:
    """Add every option of ``tingxie transcribe`` to ``parser`` (copies, so changed defaults stay here);
    returns their destinations."""
    dests = set()
    for source_group in transcribe._action_groups:  # argparse has no public way to list a parser's groups
        group = None
        for action in source_group._group_actions:
            meaning = _BATCH_MEANING.get(action.dest, ())
            if meaning is None or not action.option_strings:
                continue
            action = copy.copy(action)
            if action.dest == "output_dir":
                action.required, action.default = True, None
                action.help = "folder for the output files (<stem>.<ext>, as tingxie transcribe names them) and the job state file (required)"
            elif meaning:
                action.help, action.default = f"{meaning[0]} (default: {meaning[1]})", meaning[1]
            if group is None:
                group = parser.add_argument_group(source_group.title, source_group.description)
            group._add_action(action)
            dests.add(action.dest)
    return frozenset(dests)


def add_batch_parser(subparsers: Any) -> argparse.ArgumentParser:
    transcribe = subparsers.choices.get("transcribe")
    if transcribe is None:
        raise RuntimeError("tingxie batch must be registered after tingxie transcribe, whose options it shares")
    p = subparsers.add_parser(
        "batch",
        help="transcribe a whole folder, glob or manifest: resumable, on local workers or a Ray cluster",
        description="Transcribe every file of INPUT into --output_dir, as `tingxie transcribe` would, on a pool of worker "
        "processes (or Ray actors with --ray), each holding one model. Files already done are skipped, so after a "
        "crash or Ctrl-C the same command continues the job. A failed file is retried, then reported with its reason; "
        "the exit status is 1 when any file failed, 130 when interrupted.",
    )
    p.add_argument("input", help="a folder (walked recursively for audio and video files), a glob pattern in quotes ('calls/**/*.mp3'), "
                   "or a manifest: .txt/.lst one path a line, .tsv/.csv with a 'path' column (and optional 'duration'), .jsonl of {\"path\": ...}")
    _copy_transcribe_options(p, transcribe)
    b = p.add_argument_group("batch job")
    b.add_argument("--workers", type=int, default=None,
                   help="workers, each loading the model once (default: locally one per CPU core or one per GPU; with --ray as many as the cluster's CPUs or "
                        "GPUs fit)")
    b.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run on the Ray cluster at ADDRESS (host:port), or 'auto' for the one started on this machine with `ray start` (default: None, local "
                        "processes)")
    b.add_argument("--ray_cpus_per_worker", type=float, default=1.0, help="CPUs each Ray actor reserves, and its torch threads (default: 1)")
    b.add_argument("--ray_gpus_per_worker", type=float, default=0.0,
                   help="GPUs each Ray actor reserves; use 1 (or 0.5 to share) with --device cuda (default: 0)")
    b.add_argument("--retries", type=int, default=2,
                   help="times a failed file is tried again (a worker crash, out of memory); undecodable audio is not retried (default: 2)")
    b.add_argument("--state_file", default=None, help="the job state file (default: OUTPUT_DIR/.tingxie_batch.jsonl)")
    return p


def register(subparsers: Any) -> None:
    """The main CLI's hook: add ``batch`` with its handler."""
    parser = add_batch_parser(subparsers)
    transcribe_keys = frozenset(a.dest for g in parser._action_groups if g.title != "batch job" for a in g._group_actions) - {"input", "help"}
    parser.set_defaults(handler=partial(batch_command, transcribe_keys=transcribe_keys))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler, `kill`) stops the job as Ctrl-C does: state kept, workers stopped


def batch_command(args: argparse.Namespace, transcribe_keys: frozenset[str]) -> int:
    from ..cli.commands import options_from_args
    from ..errors import TingxieError
    from ..writers import SubtitleOptions
    from .job import run

    a = vars(args)
    if not (a["word_timestamps"] or a.get("diarize")):  # diarized words are timed too
        for name in ("highlight_words", "max_line_count", "max_line_width", "max_words_per_line"):
            if a[name]:
                print(f"tingxie batch: error: --{name} requires --word_timestamps True", file=sys.stderr)
                return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        options = options_from_args({k: a[k] for k in transcribe_keys})
        subtitle = SubtitleOptions(max_line_width=a["max_line_width"], max_line_count=a["max_line_count"],
                                   highlight_words=a["highlight_words"], max_words_per_line=a["max_words_per_line"])
        summary = run(
            a["input"], a["output_dir"], output_format=a["output_format"], model=a["model"], device=a["device"],
            dtype="float32" if not a["fp16"] and a["dtype"] == "auto" else a["dtype"], model_dir=a["model_dir"],
            threads=a["threads"], workers=a["workers"], ray=a["ray"], ray_cpus_per_worker=a["ray_cpus_per_worker"],
            ray_gpus_per_worker=a["ray_gpus_per_worker"], retries=a["retries"], options=options, subtitle=subtitle,
            state_file=a["state_file"], progress=a["progress"], verbose=a["verbose"], backend=a.get("backend", "auto"),
            compute_type=a.get("compute_type") or "auto",
        )
    except TingxieError as e:
        print(f"tingxie batch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tingxie batch: interrupted before any file was started; run the same command again", file=sys.stderr)
        return 130
    print(summary.report(), file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0
