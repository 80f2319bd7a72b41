"""Command-line parsing only: each sub-command builds option objects and calls the code that does the work."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import MISSING
from typing import Any

from ..options import COMPUTE_TYPES, DecodingOptions, TranscribeOptions, option_fields
from ..writers import FORMATS, OUTPUT_FORMATS

# Where the CLI's default differs from the API's, as in the reference CLI (beam search and best-of 5).
CLI_DEFAULTS = {"beam_size": 5, "best_of": 5}
# Options the CLI takes in another shape than the dataclass field.
_CLI_SPECIAL = {"temperature", "clip_timestamps", "prompt", "prefix", "sample_len", "max_initial_timestamp", "without_timestamps", "decoding"}


def str2bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y", "on"):
        return True
    if lowered in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def auto_bool(value: str) -> bool | None:
    """True, False, or None for 'auto' (decided at run time)."""
    return None if value.strip().lower() == "auto" else str2bool(value)


def optional(kind):
    def parse(value: str):
        return None if value.strip().lower() == "none" else kind(value)

    parse.__name__ = f"optional {kind.__name__}"
    return parse


def _default(f) -> Any:
    if f.name in CLI_DEFAULTS:
        return CLI_DEFAULTS[f.name]
    return f.default if f.default is not MISSING else f.default_factory()


def _add_dataclass_options(group, cls: type) -> None:
    """One --flag per option field, with the field's help text and default."""
    for f in option_fields(cls):
        if f.name in _CLI_SPECIAL:
            continue
        default = _default(f)
        kind = {bool: str2bool, float: optional(float), int: optional(int)}.get(type(default), optional(str))
        if f.name in ("beam_size", "best_of", "patience", "length_penalty", "compression_ratio_threshold", "logprob_threshold",
                      "no_speech_threshold", "hallucination_silence_threshold"):
            kind = optional(float) if f.name not in ("beam_size", "best_of") else optional(int)
        if f.name in ("num_speakers", "min_speakers", "max_speakers"):
            kind = optional(int)
        if f.name == "language":
            kind = optional(str)
        extra = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
        group.add_argument(f"--{f.name}", type=kind, default=default, help=f"{f.metadata['help']} (default: {default})", **extra)


# Edge packages that add sub-commands: each module's ``register(subparsers)`` adds its parser and sets
# ``handler`` (args -> exit status). These modules are argparse only; heavy imports wait for the handler.
EDGE_COMMANDS = (
    "tingxie.server.cli",
    "tingxie.batch.cli",
    "tingxie.cli.practice",
    "tingxie.cli.language",
    "tingxie.streaming.cli",
    "tingxie.finetune.cli",
    "tingxie.cli.eval",
    "tingxie.cli.tune",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tingxie", description="Speech recognition with the official Whisper weights.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('tingxie').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("transcribe", help="transcribe or translate audio files", description=f"Transcribe audio files and write {'/'.join(OUTPUT_FORMATS)}.")
    t.add_argument("audio", nargs="+", help="audio or video files (any format ffmpeg decodes)")
    m = t.add_argument_group("model")
    m.add_argument("--model", default="tiny.en", help="model name (tiny.en, base, small, ... large-v3-turbo) or path to a checkpoint (default: tiny.en, "
                                                      "embedded)")
    m.add_argument("--model_dir", default=None, help="cache folder for downloaded models (default: $TINGXIE_CACHE or ~/.cache/tingxie)")
    m.add_argument("--device", default="auto", help="torch device: cpu, cuda, cuda:1, mps or auto (default: auto)")
    m.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="weights and activations precision; auto is float16 on GPU, float32 on CPU (default: auto)")
    m.add_argument("--fp16", type=str2bool, default=True, help="as in the reference: False forces float32 (default: True)")
    m.add_argument("--threads", type=int, default=0, help="CPU threads (torch's or ONNX Runtime's); 0 keeps the runtime's choice, one per core (default: 0)")
    m.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"],
                   help="what runs the model: onnx is ONNX Runtime on the CPU without loading torch (fast start; graphs exported once into --model_dir), torch "
                        "is PyTorch (GPUs, fine-tuning); every option runs on both; auto picks onnx on a CPU and torch on a GPU (default: auto)")
    m.add_argument("--compute_type", default="auto", choices=COMPUTE_TYPES,
                   help="float32 is the reference-identical switch (float32 products); default computes in --dtype; int8 runs the linear layers with int8 "
                        "weights on the CPU, and on the onnx backend the encoder's attention with bfloat16 products where the CPU has AVX512-BF16 "
                        "(TINGXIE_ATTENTION=float32 turns that off) (about 1.5-2x faster; the text differs from the reference's in places, see "
                        "bench/RESULTS.md for WER); auto is int8 on a CPU, default on a GPU (default: auto)")
    m.add_argument("--batch_size", type=int, default=0,
                   help="> 0 transcribes by voice-activity chunks of <= 30 s, this many decoded as one batch (skips long pauses; on speech-dense audio about "
                        "as fast as sequential on a 2-core CPU; no prompt from the previous chunk); 0 slides the reference's 30-s window (default: 0)")
    o = t.add_argument_group("output")
    o.add_argument("--output_dir", "-o", default=".", help="folder for the output files (default: .)")
    o.add_argument("--output_format", "-f", default="all", choices=FORMATS, help="output format; all writes every one (default: all)")
    o.add_argument("--verbose", type=str2bool, default=True, help="print each segment as it is decoded (default: True)")
    o.add_argument("--progress", type=auto_bool, default=None, metavar="{True,False,auto}",
                   help="show a progress bar per file on stderr; auto shows it only when stderr is a terminal, so logs and pipes get none (default: auto)")
    o.add_argument("--quiet", "-q", action="store_true",
                   help="print nothing but warnings and errors: no segment lines, progress bars or one-time notes; the output files are written as usual "
                        "(default: off)")
    o.add_argument("--highlight_words", type=str2bool, default=False,
                   help="(requires --word_timestamps True) underline each word as it is spoken in srt and vtt (default: False)")
    o.add_argument("--max_line_width", type=optional(int), default=None,
                   help="(requires --word_timestamps True) maximum characters in a subtitle line (default: None)")
    o.add_argument("--max_line_count", type=optional(int), default=None,
                   help="(requires --word_timestamps True) maximum lines in a subtitle cue (default: None)")
    o.add_argument("--max_words_per_line", type=optional(int), default=None,
                   help="(requires --word_timestamps True, no effect with --max_line_width) maximum words in a cue (default: None)")
    d = t.add_argument_group("decoding")
    _add_dataclass_options(d, DecodingOptions)
    d.add_argument("--temperature", type=float, default=0.0, help="temperature to start sampling at (default: 0)")
    d.add_argument("--temperature_increment_on_fallback", type=optional(float), default=0.2,
                   help="temperature added at each fallback when a window fails the thresholds; None disables fallback (default: 0.2)")
    tr = t.add_argument_group("long-form transcription")
    _add_dataclass_options(tr, TranscribeOptions)
    tr.add_argument("--clip_timestamps", default="0", help="comma-separated start,end,... seconds of the clips to process; the last end defaults to the end "
                                                           "(default: 0)")

    models = sub.add_parser("models", help="list the models: embedded, cached and downloadable")
    models.add_argument("--model_dir", default=None, help="cache folder (default: $TINGXIE_CACHE or ~/.cache/tingxie)")
    sub.add_parser("languages", help="list the language codes and names")
    demo = sub.add_parser("demo", help="transcribe the recording bundled with the package (11.7 s of LibriSpeech) with the default engine",
                          description="Transcribe the bundled recording (LibriSpeech dev-clean 2412-153948-0000, CC BY 4.0) and print its "
                                      "segments with their times, the real-time factor and whether the text matches the reference transcript.")
    demo.add_argument("--model", default="tiny.en", help="model name or path (default: tiny.en, embedded)")
    for module_name in EDGE_COMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = getattr(args, "handler", None)
    if handler is not None:  # a sub-command registered by an edge package
        return handler(args)
    from . import commands

    _show_notes(not getattr(args, "quiet", False))
    if args.command == "transcribe":
        if args.quiet:
            args.verbose, args.progress = False, False
        del args.quiet
        word_only = ["highlight_words", "max_line_count", "max_line_width", "max_words_per_line"]
        if not (args.word_timestamps or args.diarize):  # diarized words are timed too
            for name in word_only:
                if getattr(args, name):
                    parser.error(f"--{name} requires --word_timestamps True")
        return commands.transcribe_command(vars(args))
    if args.command == "models":
        return commands.models_command(args.model_dir)
    if args.command == "languages":
        return commands.languages_command()
    if args.command == "demo":
        return commands.demo_command(args.model)
    parser.error(f"unknown command {args.command}")
    return 2


def _show_notes(show: bool) -> None:
    """The library's one-time notes (``logging.getLogger("tingxie")``, e.g. a model prepared for ONNX Runtime) go to
    stderr as ``tingxie: ...`` lines, unless --quiet."""
    import logging

    logger = logging.getLogger("tingxie")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tingxie: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if show else logging.WARNING)


def entry() -> None:
    """The ``tingxie`` command. After a transcription (its files written and closed, its output flushed) the process
    ends without the interpreter's teardown of modules and runtime thread pools (~60 ms, a few % of a short file's
    whole run); other commands (a server, a Ray batch) exit normally, through their atexit handlers."""
    argv = sys.argv[1:]
    # OpenBLAS's worker threads spin ~0.1 s after each product (the log-mel's): against onnxruntime's threads on a
    # small machine that made the next encoder window ~25 % slower. Read once, as NumPy loads OpenBLAS.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    code = main(argv)
    if argv[:1] == ["transcribe"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
