"""``tingxie tune``: choose decoding settings (LM weight and bonus, hotword boost, ...) on a small dev manifest.

Coordinate search: every setting starts at the first of its values (put the "off" value first: it is the baseline);
each setting in turn tries its values with the others fixed at the best so far, and keeps the one with the lowest
WER on the dev manifest; passes repeat until nothing changes. With ``--guard MANIFEST`` (general speech that the
domain settings must not hurt) a value is taken only if the guard WER stays within ``--max_guard_increase`` points
of the baseline's. Each point is decoded once (results are cached by setting). Importing this module is cheap.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

_OWN = {"tune", "guard", "max_guard_increase", "passes", "search", "backend", "compute_type", "threads", "report"}


def register(subparsers) -> None:
    from .eval import _add_decoding, _bool

    p = subparsers.add_parser(
        "tune", help="choose LM weight/bonus, hotword boost or other decoding settings on a dev manifest",
        description="Search decoding settings on MANIFEST (a dev set of your domain, as for tingxie eval) by WER, "
        "optionally keeping general speech (--guard) within --max_guard_increase points of the baseline, and print "
        "the chosen values as command-line options.",
        epilog="Example: tingxie tune dev.tsv --lm domain.arpa --beam_size 5 --tune lm_weight=0,0.1,0.2,0.4 "
        "--tune lm_bonus=0,0.5,1,2 --guard general.tsv. The first value of each --tune is the baseline.",
    )
    p.add_argument("manifest", help="dev manifest: TSV/CSV with a header naming audio and text columns, or JSONL with those keys")
    p.add_argument("--tune", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="a numeric decoding setting and the values to try, the baseline first; repeatable, at least one (default: none)")
    p.add_argument("--guard", default=None, help="manifest of general speech whose WER must not rise (default: none)")
    p.add_argument("--max_guard_increase", type=float, default=0.3, help="most WER points the guard may lose against the baseline (default: 0.3)")
    p.add_argument("--passes", type=int, default=2, help="coordinate-search passes at most (default: 2)")
    p.add_argument("--search", default="coordinate", choices=["coordinate", "grid"],
                   help="coordinate: one setting at a time (few points); grid: every combination (settings that act together, "
                   "such as an LM's weight and bonus) (default: coordinate)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"], help="what runs the model, as tingxie transcribe (default: auto)")
    p.add_argument("--compute_type", default="auto", help="as tingxie transcribe: auto, int8, float32 or default (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0 is one per core (default: 0)")
    p.add_argument("--report", default=None, help="write every point tried and the choice as JSON to this file (default: none)")
    p.add_argument("--model", default="tiny.en", help="model name or path (default: tiny.en, embedded)")
    p.add_argument("--model_dir", default=None, help="cache folder for downloaded models (default: $TINGXIE_CACHE or ~/.cache/tingxie)")
    p.add_argument("--terms", default=None, help="file of domain terms, one a line, for term recall (default: none)")
    p.add_argument("--progress", type=_bool, default=True, help="show a progress bar on stderr (default: True)")
    _add_decoding(p.add_argument_group("decoding (as tingxie transcribe)"))
    p.set_defaults(handler=run)


@dataclass(frozen=True)
class Point:
    settings: tuple[tuple[str, float], ...]
    wer: float
    guard_wer: float | None
    term_recall: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"settings": dict(self.settings), "wer": self.wer, "guard_wer": self.guard_wer, "term_recall": self.term_recall}


def parse_grid(specs: list[str], known: set[str]) -> dict[str, list[float]]:
    """['lm_weight=0,0.2'] -> {'lm_weight': [0.0, 0.2]}; OptionError (one line) for anything else."""
    from ..errors import OptionError

    grid: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().lstrip("-")
        if not sep or not name:
            raise OptionError(f"--tune takes NAME=V1,V2,..., got {spec!r}")
        if name not in known:
            raise OptionError(f"--tune: {name!r} is no decoding setting")
        try:
            grid[name] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise OptionError(f"--tune {name}: values must be numbers, got {values!r}") from None
        if not grid[name]:
            raise OptionError(f"--tune {name}: no values given")
    if not grid:
        raise OptionError("give at least one --tune NAME=V1,V2,... (e.g. --tune lm_weight=0,0.2,0.4)")
    return grid


_INTEGER = {"beam_size", "best_of", "sample_len", "hotword_prompt_budget", "vad_min_silence_ms", "vad_speech_pad_ms"}


def _typed(name: str, value: float) -> Any:
    return int(value) if name in _INTEGER and value == int(value) else value


def coordinate_search(grid: dict[str, list[float]], measure, max_guard_increase: float, passes: int) -> tuple[dict[str, float], list[Point]]:
    """The best settings by dev WER among those whose guard WER is within the allowance; every point measured."""
    seen: dict[tuple[tuple[str, float], ...], Point] = {}

    def point(settings: dict[str, float]) -> Point:
        key = tuple(sorted(settings.items()))
        if key not in seen:
            seen[key] = measure(settings)
        return seen[key]

    best = {name: values[0] for name, values in grid.items()}
    baseline = point(best)
    allowed = None if baseline.guard_wer is None else baseline.guard_wer + max_guard_increase / 100

    def ok(p: Point) -> bool:
        return allowed is None or p.guard_wer is None or p.guard_wer <= allowed + 1e-12

    for _ in range(max(1, passes)):
        changed = False
        for name, values in grid.items():
            current = point(best)
            for value in values:
                candidate = point({**best, name: value})
                if ok(candidate) and candidate.wer < current.wer - 1e-12:
                    best, current, changed = {**best, name: value}, candidate, True
        if not changed:
            break
    return best, list(seen.values())


def grid_search(grid: dict[str, list[float]], measure, max_guard_increase: float) -> tuple[dict[str, float], list[Point]]:
    """Every combination, the first values' one (the baseline) first; the best dev WER within the guard allowance."""
    from itertools import product

    names = list(grid)
    points = [measure(dict(zip(names, values))) for values in product(*grid.values())]
    baseline = points[0]
    allowed = None if baseline.guard_wer is None else baseline.guard_wer + max_guard_increase / 100
    fine = [p for p in points if allowed is None or p.guard_wer is None or p.guard_wer <= allowed + 1e-12]
    best = min(fine, key=lambda p: (p.wer, p is not baseline))
    return dict(best.settings), points


def run(args: argparse.Namespace) -> int:
    from .eval import run_guarded

    return run_guarded("tune", _run, args)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from ..api import load_model
    from ..evaluate import evaluate, read_manifest, read_terms
    from ..options import DecodingOptions, TranscribeOptions
    from .eval import options_from

    values = {k: v for k, v in vars(args).items() if k not in _OWN}
    defaults = {f.name: f.default for cls in (DecodingOptions, TranscribeOptions) for f in fields(cls) if f.name != "decoding"}
    numeric = {n for n, d in defaults.items() if isinstance(d, (int, float)) and not isinstance(d, bool)}
    grid = parse_grid(args.tune, numeric | {"beam_size", "best_of", "patience", "length_penalty"})
    options_from({**values, **{n: _typed(n, v[0]) for n, v in grid.items()}})  # bad options fail here, before any decoding
    rows = read_manifest(args.manifest)
    guard = read_manifest(args.guard) if args.guard else None
    vocabulary = read_terms(args.terms) if args.terms else None
    model = load_model(args.model, cache_dir=args.model_dir, backend=args.backend, compute_type=args.compute_type, threads=max(args.threads, 0))

    def measure(settings: dict[str, float]) -> Point:
        options = options_from({**values, **{n: _typed(n, v) for n, v in settings.items()}})
        dev = evaluate(model, rows, options, progress=args.progress, vocabulary=vocabulary, desc="dev")
        general = evaluate(model, guard, options, progress=args.progress, desc="guard") if guard else None
        p = Point(tuple(sorted(settings.items())), dev.wer, general.wer if general else None, dev.term_recall)
        print(format_point(p), file=sys.stderr, flush=True)
        return p

    if args.search == "grid":
        best, points = grid_search(grid, measure, args.max_guard_increase)
    else:
        best, points = coordinate_search(grid, measure, args.max_guard_increase, args.passes)
    print(format_points(points, best))
    chosen = " ".join(f"--{n} {v:g}" for n, v in best.items())
    print(f"chosen: {chosen}")
    if args.report:
        from ..evaluate import write_report

        write_report({"manifest": args.manifest, "guard": args.guard, "max_guard_increase": args.max_guard_increase,
                      "chosen": best, "points": [p.as_dict() for p in points]}, args.report)
    return 0


def format_point(p: Point) -> str:
    settings = " ".join(f"{n}={v:g}" for n, v in p.settings)
    guard = "" if p.guard_wer is None else f"  guard WER {100 * p.guard_wer:.2f}%"
    recall = "" if p.term_recall is None else f"  term recall {100 * p.term_recall:.1f}%"
    return f"{settings}: WER {100 * p.wer:.2f}%{guard}{recall}"


def format_points(points: list[Point], best: dict[str, float]) -> str:
    key = tuple(sorted(best.items()))
    return "\n".join(("* " if p.settings == key else "  ") + format_point(p) for p in points)
