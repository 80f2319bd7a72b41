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
seconds per file. Greedy decoding at temperature 0 without fallback, except the beam-5 and LM rows.

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
    two_pass: bool = False  # a second pass with the glossary's terms that the first pass plausibly contains


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
            System(f"boost{n}", f"{n} terms: trie boost only (the default)", "tiny.en", {**with_file, "hotword_prompt_budget": 0}),
            System(f"twopass{n}", f"{n} terms: boost, then a second pass with the plausible terms in the prompt", "tiny.en",
                   {**with_file, "hotword_prompt_budget": 0}, two_pass=True),
        ]
    glossaries.insert(1, System("whole10", "10 terms: boost + the whole glossary in the prompt (--hotword_prompt_budget 40)", "tiny.en",
                                {**greedy, "hotwords_file": files[10], "hotword_prompt_budget": 40}))
    tuned_w, _, tuned_b = args.lm_tuned.partition(",")
    return [
        System("base", "tiny.en", "tiny.en", greedy),
        *glossaries,
        System("beam", "tiny.en, beam 5", "tiny.en", beam),
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
        if system.two_pass:
            s, seconds, extra = two_pass(model, rows, options, vocabulary)
        else:
            report = evaluate(model, rows, options, progress=False, vocabulary=vocabulary, manifest=manifest)
            print(format_summary(report, f"{system.name} {key}: "), file=sys.stderr, flush=True)
            s, seconds, extra = report.scores, report.seconds, {"hypotheses": [u.hypothesis for u in report.utterances]}
        result[key] = {"wer": s.wer, "term_recall": s.term_recall, "term_hits": s.term_hits, "term_occurrences": s.term_occurrences,
                       "reference_words": s.reference_words, "errors": s.substitutions + s.deletions + s.insertions,
                       "n": len(rows), "seconds": round(seconds, 1), "seconds_per_file": round(seconds / len(rows), 3), **extra}
    return result


def two_pass(model, rows: list, options, vocabulary: tuple[str, ...]) -> tuple:
    """A first pass with ``options`` (the glossary boosted, not in the prompt); where its text plausibly contains glossary
    terms, a second pass with only those, in the prompt and boosted. Files without any keep the first pass."""
    from dataclasses import replace

    from tingxie.decoding.glossary import second_pass_glossary
    from tingxie.scoring import score_pairs, terms_in

    started = time.perf_counter()
    texts, second = [], 0
    for row in rows:
        first = model.transcribe(str(row.audio), options).text.strip()
        narrowed = second_pass_glossary(options.decoding.hotwords, first)
        if narrowed is not None:
            second += 1
            decoding = replace(options.decoding, hotwords=narrowed, hotword_prompt_budget=narrowed.prompt_budget)
            first = model.transcribe(str(row.audio), replace(options, decoding=decoding)).text.strip()
        texts.append(first)
    seconds = time.perf_counter() - started
    terms = [row.terms or terms_in(row.text, vocabulary, "en") for row in rows]
    scores = score_pairs([r.text for r in rows], texts, "en", terms=terms)
    print(f"two-pass: {second}/{len(rows)} files decoded twice, WER {100 * scores.wer:.2f}%", file=sys.stderr, flush=True)
    return scores, seconds, {"second_pass_files": second, "hypotheses": texts}


# chosen by tingxie tune on dev.tsv with real_en.tsv as guard (the command is in write_markdown; its points in bench/ADAPT.md)
TUNED_LM = "0.05,0"


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


def cost_check(data: Path, args: argparse.Namespace, files: int = 4, rounds: int = 5) -> dict:
    """Decoding time with and without a glossary on real-English files whose text the glossary does not change:
    the filter's own cost. Best of ``rounds`` interleaved runs per setting, greedy and beam 5."""
    from tingxie import load_model
    from tingxie.evaluate import read_manifest
    from tingxie.options import build_options

    rows = read_manifest(data / "real_en.tsv")[:files]
    model = load_model("tiny.en", backend=args.backend, compute_type=args.compute_type, threads=args.threads)
    out = {}
    for beam in (None, 5):
        settings = {"none": {}, **{f"{n} terms": {"hotwords_file": str(data / f"glossary_{n}.txt")} for n in (60, 500)}}
        best = dict.fromkeys(settings, float("inf"))
        for _ in range(rounds):
            for name, extra in settings.items():
                options = build_options(temperature=0.0, beam_size=beam, **extra)
                started = time.perf_counter()
                for row in rows:
                    model.transcribe(str(row.audio), options)
                best[name] = min(best[name], time.perf_counter() - started)
        out["greedy" if beam is None else "beam 5"] = {k: round(v, 3) for k, v in best.items()}
        print(f"cost, beam {beam}: {out['greedy' if beam is None else 'beam 5']}", file=sys.stderr, flush=True)
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
    lines = ["| decoding | no glossary (s) | 60 terms | 500 terms |", "|---|---:|---:|---:|"]
    for mode, t in r.items():
        if mode == "filter_ms":
            continue
        lines.append(f"| {mode} | {t['none']:.2f} | {t['60 terms']:.2f} ({t['60 terms'] / t['none']:.2f}x) | {t['500 terms']:.2f} "
                     f"({t['500 terms'] / t['none']:.2f}x) |")
    if "filter_ms" in r:
        lines += ["", "The filter alone, per decoding step (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in r["filter_ms"].items())
                  + "; a decoding step of tiny.en int8 takes milliseconds, so this is a few % at most; the rows above "
                  "move by more than that from round to round on this shared machine."]
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
    lines = ["| system | term recall % (held-out) | WER % held-out | WER % real English | Δ WER real English (points) | s per file (held-out / real) | time vs "
             "its baseline |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for system in order:
        r = results.get(system.name)
        if r is None:
            continue
        held, real = r["heldout"], r["real_en"]
        reference = results.get(baseline_of(system.name)) or base
        delta = "–" if reference is None else f"{100 * (real['wer'] - reference['real_en']['wer']):+.2f}"
        recall = f"{_pct(held['term_recall'])} ({held['term_hits']}/{held['term_occurrences']})"
        cost = f"{_per_file(held)} / {_per_file(real)}"
        ratio = "–" if reference is None or reference is r else f"{_seconds(r) / _seconds(reference):.2f}x"
        lines.append(f"| {r['label']} | {recall} | {_pct(held['wer'])} | {_pct(real['wer'])} ({real['errors']}/{real['reference_words']} words) | {delta} | "
                     f"{cost} | {ratio} |")
    return "\n".join(lines)


# Methods measured and dropped (their code is gone; the figures stay in the results file): name -> what it was.
DROPPED = {
    "prompt60": "60 terms, all in the prompt (cut at 223 tokens) + boost: the rule before issue 25",
    "budget60": "60 terms, 32 tokens of them in the prompt (by weight, then in order) + boost",
    "budget500": "500 terms (shuffled), 32 tokens of them in the prompt + boost",
    "takeback60": "60 terms, boost only, a begun term's bonuses added to its continuations (take-back in logit space)",
    "boost10_b2": "10 terms, boost only, hotword_boost 2 (the default before issue 25)",
    "boost60_b2": "60 terms, boost only, hotword_boost 2",
    "boost500_b2": "500 terms, boost only, hotword_boost 2",
    "twopass60_b2": "60 terms, two-pass, hotword_boost 2",
}


def dropped_table(results: dict) -> str:
    lines = ["| method (dropped) | term recall % | WER % held-out | WER % real English |", "|---|---:|---:|---:|"]
    for name, label in DROPPED.items():
        r = results.get(name)
        if r is not None and "real_en" in r:
            lines.append(f"| {label} | {_pct(r['heldout']['term_recall'])} | {_pct(r['heldout']['wer'])} | {_pct(r['real_en']['wer'])} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def tuning_tables(reports: list[str]) -> str:
    """Each ``TITLE=FILE`` tingxie tune report as its command title and a table of its points."""
    out = []
    for item in reports:
        title, _, file = item.partition("=")
        data = json.loads(Path(file).read_text(encoding="utf-8"))
        chosen = data.get("chosen")
        lines = [f"{title}" + ("" if chosen else f" (stopped {data.get('stopped', 'early')})"), "",
                 "| settings | dev WER % | dev term recall % | guard WER % (real English) | chosen |", "|---|---:|---:|---:|:-:|"]
        for p in data["points"]:
            settings = ", ".join(f"{k} {v:g}" for k, v in sorted(p["settings"].items()))
            mark = "✓" if chosen and all(abs(p["settings"][k] - v) < 1e-9 for k, v in chosen.items()) else ""
            lines.append(f"| {settings} | {_pct(p['wer'])} | {_pct(p['term_recall'])} | {_pct(p['guard_wer'])} | {mark} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def baseline_of(name: str) -> str:
    """What a row is compared with: beam 5 for the LM rows, greedy tiny.en for the others."""
    return "beam" if name.startswith("lm") else "base"


def _per_file(part: dict) -> str:
    return f"{part['seconds'] / max(part['n'], 1):.2f}"


def _seconds(r: dict) -> float:
    return r["heldout"]["seconds"] + r["real_en"]["seconds"]


def verdict(results: dict, order: list[System]) -> str:
    """Issue 25's targets for each glossary and LM row, and issue 5's bar for the fine-tuned models."""
    base, beam = results.get("base"), results.get("beam")
    if base is None:
        return ""
    lines = ["Targets (issue 25): a 60-term glossary raises term recall by >= 30 points with held-out WER below tiny.en's; a "
             "500-term glossary at no worse WER than none; real English within +0.5 points; the tuned LM below beam 5's "
             "held-out WER with real English within +0.3 points; at most 20 % more time (glossaries: the cost table below, "
             "plus the share of files decoded twice for the two-pass; LM: wall time, noisy). Fine-tuning (issue 5): recall +30 "
             "points, real English within +1 point.",
             f"On {base['real_en']['reference_words']} real-English words one word is {100 / base['real_en']['reference_words']:.2f} points.", ""]
    for system in order:
        r = results.get(system.name)
        reference = beam if system.name.startswith("lm") else base
        if r is None or reference is None or r is reference or system.name == "beam":
            continue
        gain = 100 * ((r["heldout"]["term_recall"] or 0) - (base["heldout"]["term_recall"] or 0))
        wer = 100 * (r["heldout"]["wer"] - reference["heldout"]["wer"])
        rise = 100 * (r["real_en"]["wer"] - reference["real_en"]["wer"])
        time_ratio = _seconds(r) / _seconds(reference)  # wall time on a shared machine: noisy
        cost = results.get("cost", {}).get("greedy", {})
        size = "500 terms" if system.name.endswith("500") else "60 terms"
        if cost and not system.name.startswith("lm") and size in cost:
            time_ratio = cost[size] / cost["none"]  # the filter's own cost, measured in one process
        if "second_pass_files" in r["heldout"]:  # each file decoded twice adds a whole decode
            share = (r["heldout"]["second_pass_files"] + r["real_en"]["second_pass_files"]) / (r["heldout"]["n"] + r["real_en"]["n"])
            time_ratio = time_ratio + share
        if system.name.startswith("lm"):
            checks = [("held-out WER below beam 5's", wer < 0), ("real English <= +0.3", rise <= 0.3), ("time <= 1.2x", time_ratio <= 1.2)]
        elif system.name in ("lora", "full") or system.name.startswith("also:"):
            checks = [("recall +30", gain >= 30), ("real English <= +1", rise <= 1)]
        elif system.name.endswith("500"):
            checks = [("held-out WER no worse", wer <= 0), ("real English <= +0.5", rise <= 0.5), ("time <= 1.2x", time_ratio <= 1.2)]
        elif system.name.endswith("60"):
            checks = [("recall +30", gain >= 30), ("held-out WER below", wer < 0), ("real English <= +0.5", rise <= 0.5), ("time <= 1.2x", time_ratio <= 1.2)]
        else:
            checks = [("held-out WER no worse", wer <= 0), ("real English <= +0.5", rise <= 0.5), ("time <= 1.2x", time_ratio <= 1.2)]
        met = [name for name, ok in checks if ok]
        missed = [name for name, ok in checks if not ok]
        lines.append(f"- {r['label']}: recall {gain:+.1f} points, held-out WER {wer:+.1f}, real English {rise:+.2f} points, time "
                     f"{time_ratio:.2f}x: {'meets every target' if not missed else 'misses ' + ', '.join(missed)}"
                     f"{'' if not missed or not met else ' (meets ' + ', '.join(met) + ')'}")
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
({info.get('espeak', '').split(' Data')[0].strip()}) in {len(info.get('voices', []))} voices, rates {info.get('rates', '?')} wpm, pitches \
{info.get('pitches', '?')}, with white or pink noise.
Train: {info.get('train', '?')} utterances ({info.get('train_per_term', '?')} per term from one set of templates, plus {info.get('general', '?')} everyday \
sentences without terms);
held-out: {info.get('heldout', '?')} utterances ({info.get('heldout_per_term', '?')} per term from other templates: no held-out sentence is in train, every \
term is),
split into `test.tsv` (rows 0, 2, 4, ...: {results.get('base', {}).get('heldout', {}).get('n', '?')} utterances, one per term: the table's "held-out") and \
`dev.tsv`
(rows 1, 5, 9, ...: 30 utterances for `tingxie tune`).
Real English: `data/domain/real_en.tsv`, the shared human-transcribed English recordings (../shared/data and data/extra;
{results.get('base', {}).get('real_en', {}).get('n', '?')} files, {results.get('base', {}).get('real_en', {}).get('reference_words', '?')} words).
Glossaries: `data/domain/glossary_10.txt` (every sixth term), `glossary_60.txt` (all), `glossary_500.txt` (the 60 and 440
of `bench/glossary_distractors.txt` that no recording here contains), one term a line, given as `--hotwords_file`.

## Results (held-out domain test split and real English)

Term recall: share of the held-out term occurrences that the hypothesis contains exactly (whole words after
Whisper's English normaliser). WER with the same normaliser (jiwer). Greedy decoding at temperature 0 without fallback
unless the row says beam 5. Engine: {results.get('base', {}).get('engine', 'onnx int8')} (the CPU default). Δ WER and time
are against greedy tiny.en, for the LM rows against beam 5; time is the wall time of both sets on a shared machine
(other work ran beside it: ratios within ~10 % are noise).

{table(results, order)}

{verdict(results, order)}

Other methods and settings measured (same sets and engine; their prompt code is gone: a prompt of terms that are
not said makes tiny.en write lists of terms; the take-back changed no greedy decision: the bonus of a term's first
token is at most 1 at boost 2, so it is only chosen where the model nearly chose it anyway; the boost-2 rows are the
default before `tingxie tune` chose 4):

{dropped_table(results)}
{"" if not missing else chr(10) + "Not measured: " + "; ".join(missing) + chr(10)}
## The glossary's own cost

The table's wall times come from a shared, busy machine. Here the first 4 real-English files (whose text the
glossaries do not change), decoded with and without a glossary, best of 5 interleaved rounds, in one process
(`python bench/adapt.py --only cost`):

{cost_text(results)}

## Real speech with rare words

{real_terms_text(results)}

## Tuning on the dev split (`tingxie tune`, real English as guard: at most +0.3 points)

{tuning_tables(args.tune_report)}

## Commands

```
python scripts/make_domain_set.py --out data/domain
{args.lm_command}
python bench/adapt.py {args.also_command}
```

Fine-tuning runs (on the train split only; `--threads 2`, CPU):

{chr(10).join(runs) if runs else ("(none in this checkout: data/finetune/ is not versioned. The LoRA, full and WiSE-FT rows of the last run with them, "
                                    "on PyTorch float32, all 120 held-out files and the 8 real-English files of data/, are in this file as of commit "
                                    "94a0eec: WiSE-FT 0.7 was the only one to meet issue 5's bar, +35 points of term recall at -0.5 points of real "
                                    "English, after 18 minutes of training.)")}

Each system's evaluation alone, with the CLI:

(`--beam_size None --best_of None`: greedy, as in the table; the CLI's own default is beam 5, as in openai-whisper's CLI.)

```
tingxie eval data/domain/test.tsv --model tiny.en --temperature 0 --beam_size None --best_of None
tingxie eval data/domain/test.tsv --model tiny.en --temperature 0 --beam_size None --best_of None --hotwords_file data/domain/glossary_60.txt
tingxie eval data/domain/real_en.tsv --model tiny.en --temperature 0 --beam_size None --best_of None --hotwords_file data/domain/glossary_500.txt
tingxie eval data/domain/test.tsv --model tiny.en --temperature 0 --beam_size 5 --lm {_rel(str(args.lm))} --lm_weight {args.lm_tuned.split(',')[0]} --lm_bonus \
{args.lm_tuned.split(',')[1]}
tingxie tune data/domain/dev.tsv --guard data/domain/real_en.tsv --hotwords_file data/domain/glossary_60.txt --hotword_prompt_budget 0 --beam_size None \
--best_of None --temperature_increment_on_fallback None --tune hotword_boost=2,3,4,6 --passes 1 --terms data/domain/terms.txt
tingxie tune data/domain/dev.tsv --guard data/domain/real_en.tsv --lm {_rel(str(args.lm))} --beam_size 5 --temperature_increment_on_fallback None --tune \
lm_weight=0,0.1,0.3 --tune lm_bonus=0,1,2 --passes 1 --terms data/domain/terms.txt
tingxie tune data/domain/dev.tsv --guard data/domain/real_en.tsv --lm {_rel(str(args.lm))} --beam_size 5 --temperature_increment_on_fallback None --tune \
lm_weight=0,0.05,0.1 --tune lm_bonus=0,0.5 --search grid --terms data/domain/terms.txt
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
        save(args.results, {"cost": cost_check(args.data, args)})
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
