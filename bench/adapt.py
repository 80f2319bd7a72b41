"""Domain adaptation on the held-out domain-vocabulary set: base, hotwords, n-gram LM, LoRA and full fine-tuning.

    python scripts/make_domain_set.py                      # data/domain/ (train, heldout, terms.txt, real_en.tsv)
    tingxie finetune ... --out data/finetune/lora          # the commands are in bench/ADAPT.md
    python bench/adapt.py                                  # evaluates every system, writes bench/ADAPT.md
    python bench/adapt.py --only lm                        # re-run some systems; the others come from the results file

Each system transcribes the held-out domain set (``heldout.tsv``: sentences and voices never
trained on, every term of ``terms.txt`` in them) and the shared real English speech
(``real_en.tsv``, human transcripts) through ``tingxie.evaluate`` (the code of ``tingxie eval``):
WER with Whisper's English normaliser, and term recall, the share of the manifest's domain terms
that the hypothesis contains exactly (as whole normalised words). Greedy decoding at temperature 0
without fallback, except the language-model rows, which need beam search (with a plain beam-5 row
beside them for comparison). The LM is an ARPA model of the *train* split's sentences only
(``scripts/make_lm.py``), so the held-out sentences are unseen by it as by the fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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


def systems(args: argparse.Namespace) -> list[System]:
    terms = ", ".join(Path(args.data / "terms.txt").read_text(encoding="utf-8").split("\n")).strip(", ")
    greedy = {"temperature": 0.0}
    beam = {"temperature": 0.0, "beam_size": 5}
    return [
        System("base", "tiny.en", "tiny.en", greedy),
        System("hotwords", "tiny.en + hotwords (all terms)", "tiny.en", {**greedy, "hotwords": terms}),
        System("beam", "tiny.en, beam 5", "tiny.en", beam),
        System("lm", f"tiny.en, beam 5 + LM (weight {args.lm_weight:g})", "tiny.en",
               {**beam, "lm": str(args.lm), "lm_weight": args.lm_weight}, needs=str(args.lm)),
        System("lora", "LoRA fine-tuned", str(args.lora), greedy, needs=str(args.lora / "model.safetensors")),
        System("full", "full fine-tuned (decoder)", str(args.full), greedy, needs=str(args.full / "model.safetensors")),
        *(System(f"also:{label}", label, folder, greedy, needs=str(Path(folder) / "model.safetensors"))
          for label, _, folder in (a.partition("=") for a in args.also)),
    ]


def evaluate_system(system: System, sets: dict[str, Path], vocabulary: tuple[str, ...], threads: int) -> dict:
    import torch

    from tingxie import load_model
    from tingxie.evaluate import evaluate, format_summary, read_manifest
    from tingxie.options import build_options

    if threads:
        torch.set_num_threads(threads)
    model = load_model(system.model, device="cpu", dtype="float32")
    options = build_options(**system.options)
    result = {"label": system.label, "model": system.model, "options": system.options}
    for key, manifest in sets.items():
        report = evaluate(model, read_manifest(manifest), options, progress=False, vocabulary=vocabulary, manifest=manifest)
        print(format_summary(report, f"{system.name} {key}: "), file=sys.stderr, flush=True)
        s = report.scores
        result[key] = {"wer": s.wer, "term_recall": s.term_recall, "term_hits": s.term_hits, "term_occurrences": s.term_occurrences,
                       "reference_words": s.reference_words, "errors": s.substitutions + s.deletions + s.insertions,
                       "n": len(report.utterances), "seconds": round(report.seconds, 1), "rtf": report.rtf}
    return result


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


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, torch {torch.__version__}, {platform.system()} {platform.release()}"


def finetune_command(folder: Path) -> tuple[str, dict] | None:
    """The ``tingxie finetune`` command that made a folder, rebuilt from its finetune.json, and the run's figures."""
    summary = folder / "finetune.json"
    if not summary.is_file():
        return None
    data = json.loads(summary.read_text(encoding="utf-8"))
    config = data["config"]
    from tingxie.finetune.config import FinetuneConfig

    defaults = {k: v for k, v in FinetuneConfig(train="x", out="x").to_dict().items()}
    parts = ["tingxie", "finetune", "--train", _rel(config["train"])]
    for manifest in config.get("eval") or []:
        parts += ["--eval", _rel(manifest)]
    parts += ["--out", _rel(str(folder))]  # where the model is now (a run's folder may have been renamed since)
    for key, value in config.items():
        if key in ("train", "out", "eval", "progress") or (value == defaults.get(key) and key not in ("model", "method", "epochs", "batch_size")):
            continue
        parts += [f"--{key}", _rel(value) if key == "terms" else str(value)]
    return " ".join(shlex.quote(p) for p in parts), data


def mix_command(folder: Path) -> str | None:
    """The ``tingxie mix-models`` command that made a folder, from its generation_config.json."""
    config = folder / "generation_config.json"
    if not config.is_file():
        return None
    mix = json.loads(config.read_text(encoding="utf-8")).get("tingxie_mix")
    if not mix:
        return None
    parts = ["tingxie", "mix-models", mix["base_model"], _rel(mix["tuned_model"]), "--weight", f"{mix['weight']:g}", "--out", _rel(str(folder))]
    return " ".join(shlex.quote(p) for p in parts)


def _rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def table(results: dict, order: list[System]) -> str:
    base = results.get("base")
    lines = ["| system | term recall % (held-out) | WER % held-out | WER % real English | Δ WER real English (points vs tiny.en greedy) |",
             "|---|---:|---:|---:|---:|"]
    for system in order:
        r = results.get(system.name)
        if r is None:
            continue
        held, real = r["heldout"], r["real_en"]
        delta = "–" if base is None else f"{100 * (real['wer'] - base['real_en']['wer']):+.1f}"
        recall = f"{_pct(held['term_recall'])} ({held['term_hits']}/{held['term_occurrences']})"
        lines.append(f"| {r['label']} | {recall} | {_pct(held['wer'])} | {_pct(real['wer'])} ({real['errors']}/{real['reference_words']} words) | {delta} |")
    return "\n".join(lines)


def verdict(results: dict, order: list[System]) -> str:
    """The issue's bar for each fine-tuned model: term recall up by >= 30 points, real-English WER up by <= 1 point."""
    base = results.get("base")
    if base is None:
        return ""
    lines = ["The bar (issue 5): term recall up by at least 30 points while the real-English WER rises by at most 1 point.",
             f"On {base['real_en']['reference_words']} real-English words one word is {100 / base['real_en']['reference_words']:.2f} points.", ""]
    for system in order:
        r = results.get(system.name)
        if r is None or not (system.name in ("lora", "full") or system.name.startswith("also:")):
            continue
        gain = 100 * (r["heldout"]["term_recall"] - base["heldout"]["term_recall"])
        rise = 100 * (r["real_en"]["wer"] - base["real_en"]["wer"])
        ok = gain >= 30 and rise <= 1
        lines.append(f"- {r['label']}: term recall {gain:+.1f} points, real-English WER {rise:+.2f} points: "
                     f"{'meets the bar' if ok else 'does not meet the bar'}")
    return "\n".join(lines)


def write_markdown(path: Path, results: dict, order: list[System], args: argparse.Namespace, missing: list[str]) -> None:
    info_file = args.data / "info.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    runs = []
    for name, folder in (("LoRA", args.lora), ("full", args.full), *((a.partition("=")[0], Path(a.partition("=")[2])) for a in args.also)):
        made = finetune_command(folder)
        mixed = mix_command(folder)
        if mixed:
            runs.append(f"- {name}: no training; weight-space mix of a fine-tuned model with its base (WiSE-FT)\n\n  ```\n  {mixed}\n  ```")
        elif made:
            command, data = made
            runs.append(f"- {name}: {data['steps']} steps in {data['seconds'] / 60:.1f} min, loss {data['first_loss']:.3f} → {data['last_loss']:.3f}\n\n"
                        f"  ```\n  {command}\n  ```")
    rows = results.get("_meta", {})
    text = f"""# Domain adaptation: hotwords, an n-gram LM and fine-tuning on rare terms

Generated by `python bench/adapt.py` (results in `{_rel(str(args.results))}`). Machine: {rows.get('machine', machine())}.
{rows.get('note', '')}

## The data

`python scripts/make_domain_set.py --out data/domain` (seed {info.get('seed', 0)}, SNRs {info.get('snr', '?')}): {info.get('terms', '?')} rare terms
(product names, people's names, jargon; `scripts/domain_terms.tsv`) in sentence templates, spoken by espeak-ng
({info.get('espeak', '').split(' Data')[0].strip()}) in {len(info.get('voices', []))} voices, rates {info.get('rates', '?')} wpm, pitches {info.get('pitches', '?')}, with white or pink noise.
Train: {info.get('train', '?')} utterances ({info.get('train_per_term', '?')} per term from one set of templates, plus {info.get('general', '?')} everyday sentences without terms);
held-out: {info.get('heldout', '?')} utterances ({info.get('heldout_per_term', '?')} per term from other templates: no held-out sentence is in train, every term is).
Real English: `data/domain/real_en.tsv`, the shared human-transcribed English recordings (../shared/data; {results.get('base', {}).get('real_en', {}).get('reference_words', '?')} words).

## Results (held-out domain set and real English)

Term recall: share of the held-out term occurrences that the hypothesis contains exactly (whole words after
Whisper's English normaliser). WER with the same normaliser (jiwer). Greedy decoding at temperature 0 without fallback
unless the row says beam 5.

{table(results, order)}

{verdict(results, order)}
{"" if not missing else chr(10) + "Not measured: " + "; ".join(missing) + chr(10)}
## Commands

```
python scripts/make_domain_set.py --out data/domain
{args.lm_command}
python bench/adapt.py {args.also_command}
```

Fine-tuning runs (on the train split only; `--threads 2`, CPU):

{chr(10).join(runs) if runs else "(none found)"}

Each system's evaluation alone, with the CLI:

(`--beam_size None --best_of None`: greedy, as in the table; the CLI's own default is beam 5, as in openai-whisper's CLI.)

```
tingxie eval data/domain/heldout.tsv --model tiny.en --temperature 0 --beam_size None --best_of None
tingxie eval data/domain/heldout.tsv --model tiny.en --temperature 0 --beam_size None --best_of None --hotwords "$(paste -sd, data/domain/terms.txt)"
tingxie eval data/domain/heldout.tsv --model tiny.en --temperature 0 --beam_size 5
tingxie eval data/domain/heldout.tsv --model tiny.en --temperature 0 --beam_size 5 --lm {_rel(str(args.lm))} --lm_weight {args.lm_weight:g}
tingxie eval data/domain/heldout.tsv --model {_rel(str(args.lora))} --temperature 0 --beam_size None --best_of None
tingxie eval data/domain/real_en.tsv --model {_rel(str(args.full))} --temperature 0 --beam_size None --best_of None
```
"""
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Evaluate base, hotwords, LM, LoRA and full fine-tuning on the domain set; write bench/ADAPT.md.")
    p.add_argument("--data", type=Path, default=DATA, help="the domain set from scripts/make_domain_set.py (default: data/domain)")
    p.add_argument("--lora", type=Path, default=RUNS / "lora", help="LoRA fine-tuned model folder (default: data/finetune/lora)")
    p.add_argument("--full", type=Path, default=RUNS / "full", help="fully fine-tuned model folder (default: data/finetune/full)")
    p.add_argument("--lm", type=Path, default=DATA / "train.arpa", help="ARPA LM of the train sentences (default: data/domain/train.arpa)")
    p.add_argument("--lm_weight", type=float, default=0.3, help="LM weight for the LM row (default: 0.3, the option's default)")
    p.add_argument("--only", default="", help="comma-separated systems to (re-)evaluate: base, hotwords, beam, lm, lora, full (default: all)")
    p.add_argument("--results", type=Path, default=RUNS / "adapt_results.json", help="results kept between runs (default: data/finetune/adapt_results.json)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "ADAPT.md", help="the Markdown written (default: bench/ADAPT.md)")
    p.add_argument("--also", action="append", default=[], metavar="LABEL=DIR",
                   help="another fine-tuned model folder to evaluate and list (repeatable)")
    p.add_argument("--reuse", type=lambda v: v.lower() in ("1", "true", "yes"), default=True,
                   help="take a fine-tuned model's scores from its training run's eval_after.json when that used the same manifests and options (default: True)")
    p.add_argument("--note", default="", help="a sentence about the conditions of the run, put under the machine line")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    args = p.parse_args(argv)
    args.lm_command = (f"cut -f2 data/domain/train.tsv | tail -n +2 > {_rel(str(args.lm.with_suffix('.txt')))}   # the train sentences only "
                       f"(bench/adapt.py does this when the LM is missing)\n"
                       f"python scripts/make_lm.py {_rel(str(args.lm.with_suffix('.txt')))} {_rel(str(args.lm))} --order 3")

    args.also_command = " ".join(f"--also {shlex.quote(a)}" for a in args.also)
    order = systems(args)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()} or {s.name for s in order}
    unknown = wanted - {s.name for s in order}
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    results = json.loads(args.results.read_text(encoding="utf-8")) if args.results.is_file() else {}
    sets = {"heldout": args.data / "heldout.tsv", "real_en": args.data / "real_en.tsv"}
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
        measured = measured or evaluate_system(system, sets, vocabulary, args.threads)
        measured["wall_s"] = round(time.monotonic() - started, 1)
        if "source" not in measured:
            measured["load_average"] = round(os.getloadavg()[0], 1)  # the cores may be shared: say how busy they were
        results = save(args.results, {system.name: measured})
    results = save(args.results, {"_meta": {"machine": machine()}})
    loads = [r["load_average"] for k, r in results.items() if k != "_meta" and "load_average" in r]
    results["_meta"]["note"] = " ".join(filter(None, [args.note, f"Load average {min(loads):.1f} to {max(loads):.1f} at the end of the evaluations." if loads else ""]))
    missing += [f"{s.label} (not run yet)" for s in order if s.name not in results and not any(m.startswith(s.label) for m in missing)]
    print(table(results, order))
    write_markdown(args.out, results, order, args, missing)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
