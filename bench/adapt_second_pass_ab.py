"""A/B of a glossary's second pass in one process: a revision's ``tingxie/decoding/fallback.py`` (HEAD by default)
loaded beside the working tree's, on one engine. At every window where the first pass is done, both
``second_pass`` functions run on the same inputs; the decoder calls, time, whether the pass was kept and its text
are recorded for each, and the old one's result goes on, so both see the same windows.

    /work/notes/cpu-shared .venv/bin/python bench/adapt_second_pass_ab.py                 # beam 5, 60 and 500 terms
    python bench/adapt_second_pass_ab.py --against 1d71bdb --sizes 500 --beam 0 --out ab.json   # greedy

The sets are the held-out domain test split and the real English of ``data/domain`` (``bench/adapt.py``'s
docstring makes them). Only fallback.py is swapped: the modules it imports are the working tree's. Revisions before second_pass took the
first pass's margins (``margins``, not the ``TermEvidence`` recorder) do not fit today's callers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_revision(rev: str):
    """``tingxie.decoding.fallback`` as it is at ``rev``, as a module of the package (its relative imports: today's)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:tingxie/decoding/fallback.py"], capture_output=True, text=True,
                            check=True).stdout
    spec = importlib.util.spec_from_loader("tingxie.decoding.fallback_ab", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "tingxie.decoding"
    exec(compile(source, f"{rev}:fallback.py", "exec"), module.__dict__)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", default="HEAD", help="the revision whose fallback.py is the old side (default: HEAD)")
    p.add_argument("--sizes", default="60,500", help="glossary sizes, data/domain/glossary_N.txt (default: 60,500)")
    p.add_argument("--beam", type=int, default=5, help="beam size; 0 for greedy (default: 5)")
    p.add_argument("--data", type=Path, default=REPO / "data" / "domain")
    p.add_argument("--out", type=Path, default=None, help="every second pass's record as JSON (default: none)")
    args = p.parse_args()

    import tingxie.decoding.fallback as fallback
    from tingxie import load_model
    from tingxie.evaluate import read_manifest
    from tingxie.options import build_options

    old, new = load_revision(args.against).second_pass, fallback.second_pass
    model = load_model("tiny.en")
    engine, calls = model.engine, [0]
    decode = engine.decode

    def counted(*a, **k):
        calls[0] += 1
        return decode(*a, **k)

    engine.decode = counted
    records: list[dict] = []
    where: dict = {}

    def both(engine, features, tokenizer, options, prompt, result, *a, **k):
        sides, kept_on = {}, None
        for side, fn in (("old", old), ("new", new)):
            before, started = calls[0], time.perf_counter()
            out = fn(engine, features, tokenizer, options, prompt, result, *a, **k)
            sides[side] = {"calls": calls[0] - before, "s": round(time.perf_counter() - started, 4), "kept": out is not result,
                           "text": out.text, "avg_logprob": out.avg_logprob}
            kept_on = out if side == "old" else kept_on
        if sides["old"]["calls"] or sides["new"]["calls"]:
            records.append({**where, "first": result.text, **sides})
        return kept_on

    fallback.second_pass = both
    sets = {"test": read_manifest(args.data / "test.tsv"), "real English": read_manifest(args.data / "real_en.tsv")}
    decoding = {"temperature": 0.0, "beam_size": args.beam or None}
    print("set: second passes; old / new: decoder calls, kept, seconds; texts that differ", flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        options = build_options(**decoding, hotwords_file=str(args.data / f"glossary_{size}.txt"))
        for name, rows in sets.items():
            for row in rows:
                where.update(set=f"{name}, {size} terms", file=row.audio.name)
                model.transcribe(str(row.audio), options)
            mine = [r for r in records if r["set"] == where["set"]]
            total = {side: (sum(r[side]["calls"] for r in mine), sum(r[side]["kept"] for r in mine), round(sum(r[side]["s"] for r in mine), 2))
                     for side in ("old", "new")}
            differ = sum(r["old"]["text"] != r["new"]["text"] for r in mine)
            print(f"{where['set']}: {len(mine)}; {total['old']} / {total['new']}; {differ}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(records, indent=1), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
