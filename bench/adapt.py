"""Domain adaptation on the held-out domain-vocabulary set: base, glossaries (hotwords) of 10, 60 and 500 terms by
several methods, an n-gram LM (default and tuned weights), LoRA and full fine-tuning; side by side in one run.

    python scripts/make_domain_set.py                      # data/domain/ (train, heldout, terms.txt, real_en.tsv)
    tingxie finetune ... --out data/finetune/lora          # the commands are in bench/ADAPT.md
    python bench/adapt.py                                  # evaluates every system, writes bench/ADAPT.md
    python bench/adapt.py --only base,boost60              # re-run some systems; the others come from the results file
    python bench/adapt.py --only cost,real_terms           # the glossary's own cost; real speech with rare words
    python bench/adapt.py --render --tune_report TITLE=FILE   # only write bench/ADAPT.md (with a tingxie tune report)

Each system transcribes the held-out domain test split (``test.tsv``: the even rows of ``heldout.tsv``, sentences
and voices never trained on, every term of ``terms.txt`` in them; the odd rows, ``dev.tsv``, are left for tuning:
``tingxie tune``) and the shared real English speech (``real_en.tsv``, human transcripts, ../shared/data and
data/extra) through ``tingxie.evaluate`` (the code of ``tingxie eval``) on the default CPU engine (ONNX Runtime,
int8; ``--backend torch --compute_type default`` for PyTorch float32): WER with Whisper's English normaliser, term
recall (the share of the manifest's domain terms that the hypothesis contains exactly, as whole normalised words) and
seconds per file. Greedy decoding at temperature 0 without fallback; the beam-5 and LM rows are beam 5 at temperature 0
without fallback (the cost check, ``--only cost``, also times the CLI's default decoding: beam 5 with the fallback).

Glossaries: ``glossary_10.txt`` (every sixth domain term), ``glossary_60.txt`` (all of them) and ``glossary_500.txt``
(the 60 and 440 terms of ``bench/glossary_distractors.txt`` that no recording here contains), given as
``--hotwords_file``. Methods: "boost only" (the default: the trie boost, no terms in the prompt), "whole glossary in
the prompt" (a short list within ``hotword_prompt_budget``), "two-pass" (a boosted first pass; only the terms its text
plausibly contains, ``glossary.second_pass_glossary``, go into a second pass's prompt; files with none keep the first
pass). Rows of methods since dropped (the whole 60 or a budget of terms in the prompt, take-back) stay in the results
file and in a second table. The LM is an ARPA model of the *train* split's sentences only
(``scripts/make_lm.py``), so the held-out sentences are unseen by it as by the fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from adapt_checks import cost_check, real_terms_check
from adapt_report import _rel, machine, table, write_markdown

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "domain"
RUNS = REPO / "data" / "finetune"


@dataclass(frozen=True)
class System:
    name: str
    label: str
    model: str  # a model name or a fine-tuned folder
    options: dict = field(default_factory=dict)
    needs: str = ""  # what must exist for this row (a file), else it is reported missing


GLOSSARY_SIZES = (10, 60, 500)


def glossary_files(data: Path) -> dict[int, Path]:
    """data/glossary_{10,60,500}.txt: every sixth domain term, all 60, and the 60 with 440 terms no recording contains
(shuffled)."""
    import re

    from tingxie.evaluate import read_manifest

    terms = [t for t in (data / "terms.txt").read_text(encoding="utf-8").splitlines() if t.strip()]
    spoken = " ".join(r.text for m in ("train.tsv", "heldout.tsv", "real_en.tsv") for r in read_manifest(data / m, check_audio=False))
    words = set(re.findall(r"[a-z0-9']+", spoken.lower()))
    lines = (REPO / "bench" / "glossary_distractors.txt").read_text(encoding="utf-8").splitlines()
    known = {t.lower() for t in terms}
    distractors = [d.strip() for d in lines if d.strip() and not d.startswith("#") and d.strip().lower() not in words | known]
    import random

    big = terms + distractors[: 500 - len(terms)]
    random.Random(0).shuffle(big)  # the domain terms anywhere in the list, not first (where a prompt budget would take them)
    lists = {10: terms[::6], 60: terms, 500: big}
    out = {}
    for size, chosen in lists.items():
        out[size] = data / f"glossary_{size}.txt"
        out[size].write_text("".join(t + "\n" for t in chosen), encoding="utf-8")
    return out


def systems(args: argparse.Namespace) -> list[System]:
    greedy = {"temperature": 0.0}
    beam = {"temperature": 0.0, "beam_size": 5}
    files = {n: str(args.data / f"glossary_{n}.txt") for n in GLOSSARY_SIZES}
    glossaries = []
    for n in GLOSSARY_SIZES:
        with_file = {**greedy, "hotwords_file": files[n]}
        glossaries += [
            System(f"boost{n}", f"{n} terms: trie boost only (--hotword_second_pass False)", "tiny.en",
                   {**with_file, "hotword_second_pass": False}),
            System(f"twopass{n}", f"{n} terms: boost, and a window's second pass with its plausible terms in the prompt (the default)", "tiny.en",
                   with_file),
        ]
    glossaries.insert(1, System("whole10", "10 terms: boost + the whole glossary in the prompt (--hotword_prompt_budget 40)", "tiny.en",
                                {**greedy, "hotwords_file": files[10], "hotword_prompt_budget": 40}))
    tuned_w, _, tuned_b = args.lm_tuned.partition(",")
    return [
        System("base", "tiny.en", "tiny.en", greedy),
        *glossaries,
        System("beam", "tiny.en, beam 5", "tiny.en", beam),
        *(System(f"beam{n}", f"{n} terms, beam 5 (the glossary's defaults)", "tiny.en", {**beam, "hotwords_file": files[n]}) for n in (60, 500)),
        System("lm", f"tiny.en, beam 5 + LM (weight {args.lm_weight:g}, bonus 0.5: the defaults before issue 25)", "tiny.en",
               {**beam, "lm": str(args.lm), "lm_weight": args.lm_weight, "lm_bonus": 0.5}, needs=str(args.lm)),
        System("lm_tuned", f"tiny.en, beam 5 + LM tuned on dev (weight {tuned_w}, bonus {tuned_b})", "tiny.en",
               {**beam, "lm": str(args.lm), "lm_weight": float(tuned_w), "lm_bonus": float(tuned_b)}, needs=str(args.lm)),
        System("lora", "LoRA fine-tuned", str(args.lora), greedy, needs=str(args.lora / "model.safetensors")),
        System("full", "full fine-tuned (decoder)", str(args.full), greedy, needs=str(args.full / "model.safetensors")),
        *(System(f"also:{label}", label, folder, greedy, needs=str(Path(folder) / "model.safetensors"))
          for label, _, folder in (a.partition("=") for a in args.also)),
    ]


def evaluate_system(system: System, sets: dict[str, Path], vocabulary: tuple[str, ...], args: argparse.Namespace) -> dict:
    from tingxie import load_model
    from tingxie.evaluate import evaluate, format_summary, read_manifest
    from tingxie.options import build_options

    model = load_model(system.model, backend=args.backend, compute_type=args.compute_type, threads=args.threads)
    options = build_options(**system.options)
    result = {"label": system.label, "model": system.model, "options": system.options, "engine": f"{args.backend} {args.compute_type}"}
    for key, manifest in sets.items():
        rows = read_manifest(manifest)
        report = evaluate(model, rows, options, progress=False, vocabulary=vocabulary, manifest=manifest)
        print(format_summary(report, f"{system.name} {key}: "), file=sys.stderr, flush=True)
        s, seconds, extra = report.scores, report.seconds, {"hypotheses": [u.hypothesis for u in report.utterances]}
        result[key] = {"wer": s.wer, "term_recall": s.term_recall, "term_hits": s.term_hits, "term_occurrences": s.term_occurrences,
                       "reference_words": s.reference_words, "errors": s.substitutions + s.deletions + s.insertions,
                       "n": len(rows), "seconds": round(seconds, 1), "seconds_per_file": round(seconds / len(rows), 3), **extra}
    return result


# chosen by tingxie tune on dev.tsv with real_en.tsv as guard (the command is in write_markdown; its points in bench/ADAPT.md)
TUNED_LM = "0.05,0"

def split_heldout(data: Path) -> None:
    """test.tsv (the held-out rows 0, 2, 4, ...: one sentence per term) and dev.tsv (rows 1, 5, 9, ...: for tuning)."""
    lines = (data / "heldout.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    (data / "test.tsv").write_text(header + "".join(rows[0::2]), encoding="utf-8")
    (data / "dev.tsv").write_text(header + "".join(rows[1::4]), encoding="utf-8")


def save(path: Path, update: dict) -> dict:
    """Merge ``update`` into the results file as it is now (another run may have added systems meanwhile)."""
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    results.update(update)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return results


def build_lm(train: Path, arpa: Path) -> None:
    """A trigram ARPA model of the train split's sentences (never the held-out ones), by scripts/make_lm.py."""
    import subprocess

    from tingxie.evaluate import read_manifest

    sentences = arpa.with_suffix(".txt")
    sentences.write_text("".join(row.text + "\n" for row in read_manifest(train)), encoding="utf-8")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_lm.py"), str(sentences), str(arpa), "--order", "3"], check=True)


def from_training_report(system: System, sets: dict[str, Path]) -> dict | None:
    """A fine-tuned model's scores from the evaluation its training run made (OUT/eval_after.json), when that used
    the same manifests and the same decoding options; None otherwise."""
    from dataclasses import asdict

    from tingxie.options import build_options

    report_file = Path(system.model) / "eval_after.json"
    if not report_file.is_file():
        return None
    reports = {str(Path(k).resolve()): v for k, v in json.loads(report_file.read_text(encoding="utf-8")).items()}
    wanted = json.loads(json.dumps(asdict(build_options(**system.options)), default=str))
    result = {"label": system.label, "model": system.model, "options": system.options, "source": _rel(str(report_file))}
    for key, manifest in sets.items():
        r = reports.get(str(manifest.resolve()))
        if r is None or json.loads(json.dumps(r["options"], default=str)) != wanted:
            return None
        result[key] = {"wer": r["wer"], "term_recall": r["term_recall"], "term_hits": r["term_hits"], "term_occurrences": r["term_occurrences"],
                       "reference_words": r["reference_words"], "errors": r["substitutions"] + r["deletions"] + r["insertions"],
                       "n": r["n"], "seconds": r["seconds"], "rtf": r["rtf"]}
    print(f"{system.name}: scores from {report_file} (same manifests and options)", file=sys.stderr)
    return result



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Evaluate base, hotwords, LM, LoRA and full fine-tuning on the domain set; write bench/ADAPT.md.")
    p.add_argument("--data", type=Path, default=DATA, help="the domain set from scripts/make_domain_set.py (default: data/domain)")
    p.add_argument("--lora", type=Path, default=RUNS / "lora", help="LoRA fine-tuned model folder (default: data/finetune/lora)")
    p.add_argument("--full", type=Path, default=RUNS / "full", help="fully fine-tuned model folder (default: data/finetune/full)")
    p.add_argument("--lm", type=Path, default=DATA / "train.arpa", help="ARPA LM of the train sentences (default: data/domain/train.arpa)")
    p.add_argument("--lm_weight", type=float, default=0.3, help="LM weight for the untuned LM row (default: 0.3, the option's default before issue 25)")
    p.add_argument("--only", default="", help="comma-separated systems to (re-)evaluate: base, hotwords, beam, lm, lora, full (default: all)")
    p.add_argument("--results", type=Path, default=RUNS / "adapt_results.json", help="results kept between runs (default: data/finetune/adapt_results.json)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "ADAPT.md", help="the Markdown written (default: bench/ADAPT.md)")
    p.add_argument("--also", action="append", default=[], metavar="LABEL=DIR",
                   help="another fine-tuned model folder to evaluate and list (repeatable)")
    p.add_argument("--reuse", type=lambda v: v.lower() in ("1", "true", "yes"), default=True,
                   help="take a fine-tuned model's scores from its training run's eval_after.json when that used the same manifests and options (default: "
                        "True)")
    p.add_argument("--note", default="", help="a sentence about the conditions of the run, put under the machine line")
    p.add_argument("--cost_files", type=int, default=3, help="files of each set that --only cost times (default: 3; every one of the "
                   "held-out domain files has a term, so which ones are taken moves the glossary's cost)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of the engine; 0 is one per core (default: 0)")
    p.add_argument("--backend", default="onnx", choices=["onnx", "torch"], help="engine, as tingxie transcribe --backend (default: onnx, the CPU default)")
    p.add_argument("--compute_type", default="int8", help="as tingxie transcribe --compute_type (default: int8, the CPU default)")
    p.add_argument("--render", action="store_true", help="only write bench/ADAPT.md from the results file (default: off)")
    p.add_argument("--tune_report", action="append", default=[], metavar="TITLE=FILE",
                   help="a tingxie tune --report to show in bench/ADAPT.md with the command that made it (repeatable)")
    p.add_argument("--lm_tuned", default=TUNED_LM, help=f"LM weight,bonus chosen by tingxie tune on dev.tsv (default: {TUNED_LM})")
    args = p.parse_args(argv)
    from tingxie.options import DecodingOptions

    args.budget = DecodingOptions.__dataclass_fields__["hotword_prompt_budget"].default
    split_heldout(args.data)
    glossary_files(args.data)
    args.lm_command = (f"cut -f2 data/domain/train.tsv | tail -n +2 > {_rel(str(args.lm.with_suffix('.txt')))}   # the train sentences only "
                       f"(bench/adapt.py does this when the LM is missing)\n"
                       f"python scripts/make_lm.py {_rel(str(args.lm.with_suffix('.txt')))} {_rel(str(args.lm))} --order 3")

    args.also_command = " ".join([*(f"--also {shlex.quote(a)}" for a in args.also), *(f"--tune_report {shlex.quote(t)}" for t in args.tune_report)])
    order = systems(args)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()} or {s.name for s in order}
    if args.render:
        wanted = set()
    if "cost" in wanted:
        wanted.discard("cost")
        save(args.results, {"cost": cost_check(args.data, args, files=args.cost_files)})
    if "real_terms" in wanted:
        wanted.discard("real_terms")
        save(args.results, {"real_terms": real_terms_check(args.data, args)})
    unknown = wanted - {s.name for s in order}
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    results = json.loads(args.results.read_text(encoding="utf-8")) if args.results.is_file() else {}
    sets = {"heldout": args.data / "test.tsv", "real_en": args.data / "real_en.tsv"}
    from tingxie.evaluate import read_terms

    vocabulary = read_terms(args.data / "terms.txt")
    if "lm" in wanted and not args.lm.exists():
        build_lm(args.data / "train.tsv", args.lm)
    missing = []
    for system in order:
        if system.name not in wanted:
            continue
        if system.needs and not Path(system.needs).exists():
            missing.append(f"{system.label} ({_rel(system.needs)} not found)")
            continue
        started = time.monotonic()
        measured = from_training_report(system, sets) if args.reuse else None
        measured = measured or evaluate_system(system, sets, vocabulary, args)
        measured["wall_s"] = round(time.monotonic() - started, 1)
        if "source" not in measured:
            measured["load_average"] = round(os.getloadavg()[0], 1)  # the cores may be shared: say how busy they were
        results = save(args.results, {system.name: measured})
    results = save(args.results, {"_meta": {"machine": machine()}})
    loads = [r["load_average"] for k, r in results.items() if k != "_meta" and "load_average" in r]
    results["_meta"]["note"] = " ".join(filter(None, [args.note,
                                                      f"Load average {min(loads):.1f} to {max(loads):.1f} at the end of the evaluations." if loads else ""]))
    missing += [f"{s.label} (not run yet)" for s in order if s.name not in results and not any(m.startswith(s.label) for m in missing)]
    print(table(results, order))
    write_markdown(args.out, results, order, args, missing)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
