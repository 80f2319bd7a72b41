"""bench/adapt.py's checks beside the systems' table: the glossary on real speech with rare words, and what the
glossary itself costs per file and per decoder step."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


# Rare words of the shared real recordings (LibriSpeech, LibriVox, LJ Speech) and the ComfyUI clip: a glossary check on
# real speech, where nothing is synthesized
REAL_TERMS = ("Dashwood", "Gutenberg", "letterpress", "calligraphy", "typography", "antecedents", "counselled", "ComfyUI")


def real_terms_check(data: Path, args: argparse.Namespace) -> dict:
    """real_en.tsv plus the ComfyUI clip, transcribed without and with the REAL_TERMS glossary (the defaults)."""
    from tingxie import load_model
    from tingxie.evaluate import evaluate, read_manifest

    manifest = data / "real_terms.tsv"
    lines = (data / "real_en.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    clip = (REPO.parent / "shared" / "data" / "en" / "comfyui_hotword.mp3").resolve()
    manifest.write_text("".join(lines) + f"{clip}\tThen you go into your ComfyUI folder again in the ComfyUI.\tcomfyui_hotword\n", encoding="utf-8")
    (data / "real_terms.txt").write_text("".join(t + "\n" for t in REAL_TERMS), encoding="utf-8")
    model = load_model("tiny.en", backend=args.backend, compute_type=args.compute_type, threads=args.threads)
    out = {}
    for key, extra in (("none", {}), ("glossary", {"hotwords_file": str(data / "real_terms.txt")})):
        from tingxie.options import build_options

        report = evaluate(model, read_manifest(manifest), build_options(temperature=0.0, **extra), progress=False, vocabulary=REAL_TERMS)
        s = report.scores
        out[key] = {"wer": s.wer, "term_recall": s.term_recall, "term_hits": s.term_hits, "term_occurrences": s.term_occurrences,
                    "seconds": round(report.seconds, 1), "hypotheses": [u.hypothesis for u in report.utterances]}
        print(f"real terms, {key}: WER {100 * s.wer:.2f}% term recall {100 * (s.term_recall or 0):.1f}%", file=sys.stderr, flush=True)
    return out


def cost_check(data: Path, args: argparse.Namespace, files: int = 3, rounds: int = 3) -> dict:
    """Decoding time with and without a glossary (and beam 5 with and without the LM), per file the best of ``rounds``
    interleaved runs per setting, summed, in one process: on real-English files whose text the glossary does not change (the filter's and the
    plausibility check's own cost) and on held-out domain files, where the second pass runs. Greedy and beam 5 at
    temperature 0 alone (as the quality rows), and the CLI's default decoding (beam 5, the temperature fallback)."""
    from tingxie import load_model
    from tingxie.cli.main import CLI_DEFAULTS  # `tingxie transcribe` with no decoding option: these over build_options' defaults
    from tingxie.evaluate import read_manifest
    from tingxie.options import build_options

    sets = {"real English": read_manifest(data / "real_en.tsv")[:files], "held-out domain": read_manifest(data / "test.tsv")[:files]}
    glossaries = {f"{n} terms": {"hotwords_file": str(data / f"glossary_{n}.txt")} for n in (60, 500)}
    lm = {"lm": str(args.lm), "lm_weight": float(args.lm_tuned.split(",")[0]), "lm_bonus": float(args.lm_tuned.split(",")[1])}
    model = load_model("tiny.en", backend=args.backend, compute_type=args.compute_type, threads=args.threads)
    out = {}
    for set_name, rows in sets.items():
        with_lm = {"none": {}, **glossaries, "LM": lm} if args.lm.exists() else {"none": {}, **glossaries}
        # the last: what users run (the CLI's defaults: beam 5, best_of 5, the temperature fallback and its thresholds)
        modes = {"greedy": ({"temperature": 0.0}, {"none": {}, **glossaries}),
                 "beam 5": ({"temperature": 0.0, "beam_size": 5}, with_lm),
                 "CLI default": (dict(CLI_DEFAULTS), with_lm)}
        for mode, (base, settings) in modes.items():
            best = {name: [float("inf")] * len(rows) for name in settings}  # per file: a slow round of one file is left out alone
            for _ in range(rounds):
                for name, extra in settings.items():
                    options = build_options(**base, **extra)
                    for i, row in enumerate(rows):
                        started = time.perf_counter()
                        model.transcribe(str(row.audio), options)
                        best[name][i] = min(best[name][i], time.perf_counter() - started)
            key = f"{set_name}, {mode}"
            out[key] = {k: round(sum(v), 3) for k, v in best.items()}
            print(f"cost, {key}: {out[key]}", file=sys.stderr, flush=True)
    out["filter_ms"] = filter_step_ms(data)
    return out


def filter_step_ms(data: Path) -> dict:
    """The hotword filter's time per decoding step on NumPy logits, alone (best of 5 x 200 calls), for 1 and 5 rows."""
    import numpy as np

    from tingxie.decoding.glossary import make_glossary
    from tingxie.decoding.hotwords import hotword_filter
    from tingxie.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(False)
    out = {}
    for n in (60, 500):
        f = hotword_filter(tokenizer, make_glossary(None, str(data / f"glossary_{n}.txt"), 0), 4.0, 3)
        for rows in (1, 5):
            tokens = np.array([[0, 0, 0] + tokenizer.encode(" We deployed the new cluster with")] * rows)
            logits = np.zeros((rows, 51864), np.float32)
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(200):
                    f.apply(logits, tokens)
                best = min(best, (time.perf_counter() - started) / 200)
            out[f"{n} terms, {rows} row{'s' if rows > 1 else ''}"] = round(1000 * best, 3)
    return out


def cost_text(results: dict) -> str:
    r = results.get("cost")
    if not r:
        return "(not run: python bench/adapt.py --only cost)"
    lines = ["| files, decoding | none (s) | 60 terms | 500 terms | LM (tuned) |", "|---|---:|---:|---:|---:|"]
    for mode, t in r.items():
        if mode == "filter_ms":
            continue
        cells = [f"{t[k]:.2f} ({t[k] / t['none']:.2f}x)" if k in t else "–" for k in ("60 terms", "500 terms", "LM")]
        lines.append(f"| {mode} | {t['none']:.2f} | " + " | ".join(cells) + " |")
    if "filter_ms" in r:
        lines += ["", "The filter alone, per decoding step (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in r["filter_ms"].items())
                  + "; a decoding step of tiny.en int8 takes milliseconds, so this is a few % at most."]
    return "\n".join(lines)


def real_terms_text(results: dict) -> str:
    r = results.get("real_terms")
    if not r:
        return "(not run: python bench/adapt.py --only real_terms)"
    a, b = r["none"], r["glossary"]
    return (f"Glossary of the shared real recordings' own rare words ({', '.join(REAL_TERMS)}; `data/domain/real_terms.txt`) on "
            f"`real_terms.tsv` (real_en.tsv and the ComfyUI clip), greedy, default settings: term recall {_pct(a['term_recall'])} % "
            f"({a['term_hits']}/{a['term_occurrences']}) without, {_pct(b['term_recall'])} % ({b['term_hits']}/{b['term_occurrences']}) with; "
            f"WER {_pct(a['wer'])} % without, {_pct(b['wer'])} % with.")
