"""Glossaries: terms with weights from --hotwords and --hotwords_file, the prompt budget and its choice of terms,
weighted trie bonuses, the second pass's choice of plausible terms; and `tingxie tune`'s search."""

from __future__ import annotations

import numpy as np
import pytest

from tingxie.decoding.glossary import (
    Glossary,
    edit_distance,
    edit_distances,
    make_glossary,
    parse_terms,
    plausible_terms,
    read_terms_file,
    second_pass_glossary,
    second_pass_holds,
    seen_terms,
)
from tingxie.decoding.hotwords import HotwordBoost, hotword_filter, hotword_prompt_tokens, hotword_tries
from tingxie.errors import OptionError
from tingxie.options import build_options
from tingxie.tokenizer import get_tokenizer

TOKENIZER = get_tokenizer(False)
V = 51864


def ids(text: str) -> list[int]:
    return TOKENIZER.encode(text)


def test_terms_with_weights():
    assert parse_terms("Kubernetes, ComfyUI:2.5 ,, Area 51") == [("Kubernetes", 1.0), ("ComfyUI", 2.5), ("Area 51", 1.0)]
    assert parse_terms("note: this") == [("note: this", 1.0)]  # no number after the colon: part of the term
    with pytest.raises(OptionError, match="must be a number >= 0"):
        parse_terms("Kubernetes:-1")


def test_file_terms_weights_and_comments(tmp_path):
    path = tmp_path / "glossary.txt"
    path.write_text("# product names\nKubernetes\nComfyUI\t3\nC#\n\nSiobhan: 0.5\n", encoding="utf-8")
    assert read_terms_file(path) == [("Kubernetes", 1.0), ("ComfyUI", 3.0), ("C#", 1.0), ("Siobhan", 0.5)]
    glossary = make_glossary("Grafana, ComfyUI:2", str(path), 16)
    assert glossary.terms == ("Grafana", "ComfyUI", "Kubernetes", "C#", "Siobhan") and glossary.weight_of()["ComfyUI"] == 3.0
    assert str(Glossary(("A", "B"), (1.0, 2.0))) == "A, B:2"
    with pytest.raises(OptionError, match="hotwords file not found"):
        read_terms_file(tmp_path / "missing.txt")


def test_options_hold_one_glossary_and_keep_it_through_replace(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("Kubernetes\nTraefik\t2\n", encoding="utf-8")
    options = build_options(hotwords="ComfyUI", hotwords_file=str(path), hotword_prompt_budget=8)
    glossary = options.decoding.hotwords
    assert isinstance(glossary, Glossary) and glossary.terms == ("ComfyUI", "Kubernetes", "Traefik") and glossary.prompt_budget == 8
    assert options.window_decoding(0.4).hotwords == glossary  # the per-window copies keep it
    assert build_options().decoding.hotwords is None
    with pytest.raises(OptionError, match="hotword_prompt_budget must be >= 0"):
        build_options(hotwords="x", hotword_prompt_budget=-1)


def test_cli_says_one_line_for_a_missing_glossary(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "tingxie", "transcribe", "x.wav", "--hotwords_file", str(tmp_path / "no.txt")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "hotwords file not found" in run.stderr and "Traceback" not in run.stderr


def test_prompt_budget_takes_a_short_glossary_whole_and_of_a_long_one_the_terms_seen():
    glossary = Glossary(("Kubernetes", "Grafana", "ComfyUI", "Siobhan"), (1.0, 1.0, 3.0, 1.0), prompt_budget=8)
    whole = ids(" Kubernetes, Grafana, ComfyUI, Siobhan")
    previous = ids(" we deployed Grafana and ComfyUI yesterday")
    tokens = hotword_prompt_tokens(TOKENIZER, glossary, previous, 223)
    hot = tokens[: len(tokens) - len(previous)]
    assert tokens[len(hot):] == previous and len(whole) > 8
    assert TOKENIZER.decode(hot) == " ComfyUI, Grafana" and len(hot) <= 8  # seen ones only, the heavier first
    assert hotword_prompt_tokens(TOKENIZER, glossary, ids(" hello"), 223) == ids(" hello")  # none seen: none
    roomy = Glossary(glossary.terms, glossary.weights, prompt_budget=len(whole))
    assert hotword_prompt_tokens(TOKENIZER, roomy, [], 223) == whole  # it fits: all of it, in the order given
    assert hotword_prompt_tokens(TOKENIZER, Glossary(glossary.terms, glossary.weights, 0), previous, 223) == previous
    # a plain string keeps every hotword (cut at the limit), as before
    assert hotword_prompt_tokens(TOKENIZER, "Kubernetes, Grafana", [], 223) == ids(" Kubernetes, Grafana")
    assert seen_terms(("ComfyUI", "UI"), "open the comfyui folder.") == frozenset({"ComfyUI"})


def _bonuses(f, sampled):
    logits = np.zeros((1, V), np.float32)
    f.apply(logits, np.array([[0, *sampled]]))
    return {int(t): float(logits[0, t]) for t in np.flatnonzero(logits[0])}


def test_weights_scale_the_bonuses():
    com, fy, _ = ids(" ComfyUI")
    word, start = hotword_tries(TOKENIZER, ("ComfyUI",), (3.0,))
    assert _bonuses(HotwordBoost(word, start, 2.0, 1, TOKENIZER.eot), ids(" the") + [com]) == {com: 3.0, fy: 6.0}
    glossary = make_glossary("ComfyUI:3, Grafana:0", None, 0)  # weight 0: in the glossary, never boosted
    f = hotword_filter(TOKENIZER, glossary, 2.0, 1)
    assert _bonuses(f, ids(" the") + [com])[fy] == 6.0 and ids(" Grafana")[0] not in _bonuses(f, ids(" the"))


def test_second_pass_takes_only_the_terms_the_first_pass_resembles():
    glossary = make_glossary("Kubernetes, ComfyUI:2, Grafana, Traefik", None, 0)
    narrowed = second_pass_glossary(glossary, "Then you go into your comfyu eye folder on cooper netties.")
    assert set(narrowed.terms) == {"Kubernetes", "ComfyUI"} and narrowed.weight_of() == {"Kubernetes": 1.0, "ComfyUI": 2.0}
    assert narrowed.prompt_budget == 64
    assert second_pass_glossary(glossary, "And so my fellow Americans, ask not what your country can do for you") is None
    assert second_pass_glossary(glossary, "Then you go into your ComfyUI folder.") is None  # spelled already: nothing to redo
    assert set(plausible_terms(("Svelte", "Jupyter", "mutex"), "we used svelt and jupiter with a mew tex")) == {"Svelte", "Jupyter", "mutex"}


def test_coarse_key_finds_what_tiny_models_mis_hear():
    glossary = make_glossary("Padraig, Tchaikovsky, Kubernetes", None, 0)
    text = "We are waiting for port rig and Chai kafki to approve the budget."
    assert set(plausible_terms(glossary.terms, text)) == {"Padraig", "Tchaikovsky"}
    assert plausible_terms(("Voir", "Padraig"), "waiting for port rig") == ("Padraig",)  # "Voir" is too short a key to tell from "for"


def test_bit_parallel_distances_equal_the_table():
    rng = np.random.default_rng(0)
    keys = ["".join(rng.choice(list("abcd"), rng.integers(1, 64))) for _ in range(300)]
    spans = ["".join(rng.choice(list("abcde"), rng.integers(1, 40))) for _ in range(300)]
    assert edit_distances(keys, spans).tolist() == [edit_distance(s, k, 999) for k, s in zip(keys, spans)]


def test_second_pass_takes_the_closest_few_of_a_long_glossary():
    terms = [f"Term{i}" for i in range(400)] + ["Grafana", "Grafanix", "Kubernetes", "Kuberneticus"]
    narrowed = second_pass_glossary(make_glossary(terms, None, 0), "we checked grafana on cooper netties", max_terms=2)
    assert narrowed.terms == ("Grafana", "Kubernetes")  # exact sound first; the farther spellings are left out


def test_second_pass_is_kept_only_where_it_spells_a_term_in_about_as_many_words():
    narrowed = Glossary(("ComfyUI",), (1.0,), 64)
    first = "Then you go into your comfyu eye folder again in the comfyu eye."
    assert second_pass_holds(first, "Then you go into your ComfyUI folder again in the ComfyUI.", narrowed)
    assert not second_pass_holds(first, "Then you go into your comfy eye folder again in the comfy eye.", narrowed)  # spells nothing new
    assert not second_pass_holds(first, first[:-1] + ", ComfyUI, ComfyUI, ComfyUI, ComfyUI.", narrowed)  # a list written after the speech
    assert not second_pass_holds(first, "Then ComfyUI.", narrowed)  # stopped early


def test_coordinate_search_keeps_the_guard():
    from tingxie.cli.tune import Point, coordinate_search, grid_search, parse_grid

    grid = parse_grid(["lm_weight=0,0.2,0.4", "lm_bonus=0,1"], {"lm_weight", "lm_bonus"})
    assert grid == {"lm_weight": [0.0, 0.2, 0.4], "lm_bonus": [0.0, 1.0]}

    def measure(s):  # dev WER falls with the weight; the guard rises past the allowance at 0.4
        return Point(tuple(sorted(s.items())), 0.5 - s["lm_weight"] - 0.01 * s["lm_bonus"], 0.05 + (0.01 if s["lm_weight"] > 0.3 else 0), None)

    best, points = coordinate_search(grid, measure, max_guard_increase=0.3, passes=2)
    assert best == {"lm_weight": 0.2, "lm_bonus": 1.0}
    assert len({p.settings for p in points}) == len(points)  # each point decoded once
    best, points = grid_search(grid, measure, max_guard_increase=0.3)
    assert best == {"lm_weight": 0.2, "lm_bonus": 1.0} and len(points) == 6
    with pytest.raises(OptionError, match="no decoding setting"):
        parse_grid(["nope=1"], {"lm_weight"})
    with pytest.raises(OptionError, match="values must be numbers"):
        parse_grid(["lm_weight=a"], {"lm_weight"})


def test_cli_glossary_file_on_the_default_path(shared, tmp_path):
    """A glossary file with a weight spells the term on the CLI's default engine (boost only: no prompt)."""
    import subprocess
    import sys

    from conftest import REPO, audio_path

    glossary = tmp_path / "glossary.txt"
    glossary.write_text("# products\nComfyUI\t1.5\nKubernetes\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "tingxie", "transcribe", str(audio_path("comfyui_hotword")), "--hotwords_file", str(glossary),
                          "--output_format", "txt", "--output_dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "comfyui_hotword.txt").read_text(encoding="utf-8").count("ComfyUI") == 2


def test_cli_tune_chooses_within_the_guard(shared, tmp_path):
    """`tingxie tune` on real speech: every point decoded, the choice printed and reported."""
    import json
    import subprocess
    import sys

    from conftest import REPO, audio_path

    dev = tmp_path / "dev.tsv"
    dev.write_text(f"audio\ttext\n{audio_path('comfyui_hotword')}\tThen you go into your ComfyUI folder again in the ComfyUI.\n", encoding="utf-8")
    guard = tmp_path / "guard.tsv"
    guard.write_text(f"audio\ttext\n{audio_path('jfk')}\tAnd so, my fellow Americans, ask not what your country can do for you, "
                     "ask what you can do for your country.\n", encoding="utf-8")
    report = tmp_path / "tune.json"
    run = subprocess.run([sys.executable, "-m", "tingxie", "tune", str(dev), "--guard", str(guard), "--hotwords", "ComfyUI",
                          "--beam_size", "None", "--best_of", "None", "--tune", "hotword_boost=4,6", "--progress", "False",
                          "--report", str(report)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads(report.read_text(encoding="utf-8"))
    assert [p["settings"]["hotword_boost"] for p in data["points"]] == [4.0, 6.0]
    assert all(p["guard_wer"] is not None for p in data["points"])
    baseline, other = data["points"]
    better = other["wer"] < baseline["wer"] and other["guard_wer"] <= baseline["guard_wer"] + 0.003
    assert data["chosen"] == {"hotword_boost": 6.0 if better else 4.0}
    assert f"chosen: --hotword_boost {data['chosen']['hotword_boost']:g}" in run.stdout


def test_tune_help_gives_every_default():
    from tingxie.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["tune"].format_help()
    entries: list[str] = []
    for line in text.splitlines():
        if line.startswith("  -"):
            entries.append(line)
        elif entries and line.startswith("    "):
            entries[-1] += " " + line.strip()
    options = [e for e in entries if not e.lstrip().startswith("-h")]
    assert len(options) > 20 and "--tune NAME=V1,V2,..." in text and "--guard" in text
    assert all("(default:" in line for line in options), [line for line in options if "(default:" not in line]


def test_second_pass_needs_the_model_to_have_considered_a_term():
    from tingxie.decoding.glossary import MIN_MARGIN, second_pass_sample_len

    glossary = make_glossary("Kubernetes, ComfyUI:2, Grafana, Traefik", None, 0)
    text = "Then you go into your comfyu eye folder on cooper netties."
    margins = {"Kubernetes": MIN_MARGIN - 1, "ComfyUI": MIN_MARGIN - 0.5, "Grafana": 0.0, "Traefik": 0.0}
    assert second_pass_glossary(glossary, text, evidence=margins.get) is None  # both sound-alikes far below the best token
    margins["ComfyUI"] = MIN_MARGIN
    assert set(second_pass_glossary(glossary, text, evidence=margins.get).terms) == {"Kubernetes", "ComfyUI"}  # one is enough
    assert second_pass_sample_len(20, 5) > 25


def test_term_evidence_keeps_each_term_s_best_first_token_margin():
    from tingxie.decoding.hotwords import TermEvidence

    glossary = make_glossary("ComfyUI, Grafana", None, 0)
    evidence = TermEvidence(TOKENIZER, glossary)
    assert evidence.margin("Grafana") == -np.inf  # no step seen
    logits = np.zeros((2, V), np.float32)
    logits[:, 0] = 10.0
    logits[1, ids(" Com")[0]] = 7.0  # a second row (beam) nearer to the term
    evidence.apply(logits, np.zeros((2, 3), np.int64))
    logits[:] = -20.0
    logits[0, ids("Grafana")[0]] = logits[1, 0] = 1.0  # the term's start-of-text spelling is the best token here
    evidence.apply(logits, np.zeros((2, 4), np.int64))
    assert evidence.margin("ComfyUI") == -3.0 and evidence.margin("Grafana") == 0.0


def test_a_beam_search_with_a_long_glossary_decodes_its_first_pass_unboosted(tmp_path):
    """Beyond BEAM_BOOST_MAX_TERMS terms a beam's first pass has no boost; greedy and sampled passes keep it."""
    from tingxie.decoding.fallback import BEAM_BOOST_MAX_TERMS, pass_window

    def glossary_file(n: int) -> str:
        path = tmp_path / f"g{n}.txt"
        path.write_text("Grafana: 2\n" + "".join(f"Term{i}\n" for i in range(n - 1)), encoding="utf-8")
        return str(path)

    long, short = glossary_file(BEAM_BOOST_MAX_TERMS + 1), glossary_file(BEAM_BOOST_MAX_TERMS)
    beam_long = build_options(beam_size=5, hotwords_file=long, temperature=(0.0, 0.2))
    assert pass_window(beam_long, 0.0).hotword_boost == 0.0 and pass_window(beam_long, 0.2).hotword_boost == 4.0  # sampled: boosted
    assert pass_window(beam_long, 0.0).hotwords == beam_long.decoding.hotwords  # the second pass still reads the glossary
    assert pass_window(build_options(beam_size=5, hotwords_file=short), 0.0).hotword_boost == 4.0
    assert pass_window(build_options(hotwords_file=long, temperature=0.0), 0.0).hotword_boost == 4.0  # greedy: boosted


def test_a_long_glossary_leaves_unrelated_speech_as_it_was_with_the_cli_defaults(tiny_en_default, shared):
    """What users run: the CLI's default decoding (beam 5, the temperature fallback) with 440 terms none of these
    recordings has: the same text as without the glossary (the boosted beam changed jfk, mit_license_read and
    declaration_tts before long glossaries' first passes went unboosted)."""
    from pathlib import Path

    from conftest import audio_path

    from tingxie.cli.main import CLI_DEFAULTS

    glossary = str(Path(__file__).resolve().parents[1] / "bench" / "glossary_distractors.txt")
    for name in ("jfk", "mit_license_read"):
        plain = tiny_en_default.transcribe(str(audio_path(name)), build_options(**CLI_DEFAULTS)).text
        with_glossary = tiny_en_default.transcribe(str(audio_path(name)), build_options(**CLI_DEFAULTS, hotwords_file=glossary)).text
        assert with_glossary == plain, (name, plain, with_glossary)
