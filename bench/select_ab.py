"""Beam search's top-k, compiled (tingxie/_select) against the NumPy path, in one process on one engine: the same files
transcribed with each in turn (rounds alternating), the best time of each and whether every text is the same.

    /work/notes/cpu-exclusive .venv/bin/python bench/select_ab.py            # real_concat beam 5; 10 domain files beam 5 + 500 terms
    python bench/select_ab.py --rounds 6 --domain_files 0                   # real_concat only
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds; the best of each side is reported (default: 4)")
    p.add_argument("--domain_files", type=int, default=10,
                   help="held-out domain files (data/domain/test.tsv) with the 500-term glossary; 0 skips them (default: 10)")
    p.add_argument("--data", type=Path, default=REPO / "data" / "domain")
    args = p.parse_args()

    from tingxie import load_model
    from tingxie.decoding import selectors
    from tingxie.evaluate import read_manifest
    from tingxie.options import build_options

    compiled = selectors._select_library
    if compiled() is None:
        raise SystemExit("tingxie/_select is not built here: python setup.py build_ext --inplace")
    model = load_model("tiny.en")
    cases = {"real_concat, beam 5": ([REPO.parent / "shared" / "data" / "en" / "real_concat.flac"], build_options(temperature=0.0, beam_size=5))}
    if args.domain_files:
        rows = read_manifest(args.data / "test.tsv")[: args.domain_files]
        cases[f"{len(rows)} domain files, beam 5 + 500 terms"] = (
            [r.audio for r in rows], build_options(temperature=0.0, beam_size=5, hotwords_file=str(args.data / "glossary_500.txt")))
    sides = {"NumPy": lambda: None, "compiled": compiled}
    for name, (files, options) in cases.items():
        best, texts = {side: float("inf") for side in sides}, {}
        for _ in range(args.rounds):
            for side, library in sides.items():
                selectors._select_library = library
                started = time.perf_counter()
                out = [model.transcribe(str(f), options).text for f in files]
                best[side] = min(best[side], time.perf_counter() - started)
                texts.setdefault(side, out)
        selectors._select_library = compiled
        print(f"{name}: NumPy {best['NumPy']:.3f} s, compiled {best['compiled']:.3f} s: {best['compiled'] / best['NumPy']:.3f}x; "
              f"texts {'the same' if texts['NumPy'] == texts['compiled'] else 'DIFFER'}", flush=True)


if __name__ == "__main__":
    main()
