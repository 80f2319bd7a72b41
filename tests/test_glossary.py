"""Glossaries: terms with weights from --hotwords and --hotwords_file, the prompt budget and its choice of terms,
weighted trie bonuses, the confidence gate and the take-back of a begun term; and `tingxie tune`'s search."""

from __future__ import annotations

import numpy as np
import pytest

from tingxie.decoding.glossary import Glossary, make_glossary, parse_terms, read_terms_file
from tingxie.decoding.hotwords import HotwordBoost, hotword_prompt_tokens, hotword_tries, seen_terms
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


def test_prompt_budget_takes_whole_terms_seen_first_then_by_weight():
    glossary = Glossary(("Kubernetes", "Grafana", "ComfyUI", "Siobhan"), (1.0, 1.0, 3.0, 1.0), prompt_budget=8)
    previous = ids(" we deployed Grafana yesterday")
    tokens = hotword_prompt_tokens(TOKENIZER, glossary, previous, 223)
    hot = tokens[: len(tokens) - len(previous)]
    assert tokens[len(hot):] == previous
    assert TOKENIZER.decode(hot) == " Grafana, ComfyUI" and len(hot) <= 8  # seen first, then the heavier term; then full
    assert hotword_prompt_tokens(TOKENIZER, Glossary(glossary.terms, glossary.weights, 0), previous, 223) == previous
    # a plain string keeps every hotword (cut at the limit), as before
    assert hotword_prompt_tokens(TOKENIZER, "Kubernetes, Grafana", [], 223) == ids(" Kubernetes, Grafana")
    assert seen_terms(("ComfyUI", "UI"), "open the comfyui folder.") == frozenset({"ComfyUI"})


def _filter(gate=None, takeback=False, weights=(1.0,)):
    word, start = hotword_tries(TOKENIZER, ("ComfyUI",), weights)
    return HotwordBoost(word, start, 2.0, 1, TOKENIZER.eot, gate, takeback)


def _bonuses(f, sampled, logits=None):
    logits = np.zeros((1, V), np.float32) if logits is None else logits
    before = logits.copy()
    f.apply(logits, np.array([[0, *sampled]]))
    return {int(t): float(logits[0, t] - before[0, t]) for t in np.flatnonzero(logits[0] != before[0])}


def test_weights_scale_the_bonuses():
    com, fy, _ = ids(" ComfyUI")
    assert _bonuses(_filter(weights=(3.0,)), ids(" the") + [com]) == {com: 3.0, fy: 6.0}


def test_take_back_makes_leaving_a_begun_term_cost_its_bonus():
    com, fy, ui = ids(" ComfyUI")
    f = _filter(takeback=True)
    assert _bonuses(f, ids(" the") + [com]) == {com: 1.0, fy: 2.0 + 1.0}  # its own boost + the start bonus owed
    assert _bonuses(f, ids(" the") + [com, fy]) == {com: 1.0, ui: 2.0 + 1.0 + 2.0}
    assert _bonuses(f, ids(" the") + [com, fy, ui]) == {com: 1.0}  # completed: nothing owed


def test_confidence_gate_keeps_terms_from_starting_where_the_model_is_sure():
    com, fy, _ = ids(" ComfyUI")
    sure = np.zeros((1, V), np.float32)
    sure[0, ids(" the")[0]] = 30.0  # one token holds nearly all the probability
    assert _bonuses(_filter(gate=0.9), ids(" the"), sure) == {}
    assert _bonuses(_filter(gate=0.9), ids(" the")) == {com: 1.0}  # unsure (flat): a term may start
    assert _bonuses(_filter(gate=0.9), ids(" the") + [com], sure) == {fy: 2.0}  # a begun term goes on regardless


def test_coordinate_search_keeps_the_guard():
    from tingxie.tune_cli import Point, coordinate_search, parse_grid

    grid = parse_grid(["lm_weight=0,0.2,0.4", "lm_bonus=0,1"], {"lm_weight", "lm_bonus"})
    assert grid == {"lm_weight": [0.0, 0.2, 0.4], "lm_bonus": [0.0, 1.0]}

    def measure(s):  # dev WER falls with the weight; the guard rises past the allowance at 0.4
        return Point(tuple(sorted(s.items())), 0.5 - s["lm_weight"] - 0.01 * s["lm_bonus"], 0.05 + (0.01 if s["lm_weight"] > 0.3 else 0), None)

    best, points = coordinate_search(grid, measure, max_guard_increase=0.3, passes=2)
    assert best == {"lm_weight": 0.2, "lm_bonus": 1.0}
    assert len({p.settings for p in points}) == len(points)  # each point decoded once
    with pytest.raises(OptionError, match="no decoding setting"):
        parse_grid(["nope=1"], {"lm_weight"})
    with pytest.raises(OptionError, match="values must be numbers"):
        parse_grid(["lm_weight=a"], {"lm_weight"})
