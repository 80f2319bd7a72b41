"""Pronunciation practice on real speech (jfk.flac) with the real tiny.en weights: the true text scores every
word ok, three swapped words are flagged and nothing else, an unrelated sentence scores low; and the reports,
the CLI and ``POST /v1/practice`` that carry the same result."""

from __future__ import annotations

import json
import re
from itertools import pairwise

import pytest
from conftest import audio_path, manifest_rows

from tingxie.practice import MISSED, OK, REPLACED, PracticeOptions, align, practice, render, units_of, verdict_of


def _true_text() -> str:
    return next(r["reference"] for r in manifest_rows() if r["id"] == "jfk")


SWAPS = {"country": "county", "fellow": "yellow", "ask": "task"}


def _swapped(text: str) -> str:
    """The first 'country', 'fellow' and 'ask' of the sentence replaced by near-homophones."""
    for said, meant in SWAPS.items():
        text = re.sub(rf"\b{said}\b", meant, text, count=1)
    return text


@pytest.fixture(scope="module")
def jfk():
    return audio_path("jfk")


@pytest.fixture(scope="module")
def true_result(tiny_en, jfk):
    return practice(tiny_en, jfk, _true_text())


def test_the_true_text_scores_every_word_ok(true_result):
    words = [w.word for w in true_result.words]
    assert words[:5] == ["And", "so,", "my", "fellow", "Americans,"] and len(words) == 22
    assert [w.label for w in true_result.words if w.verdict != OK] == []
    assert true_result.score == 100.0 and true_result.to_repeat == []
    assert min(w.probability for w in true_result.words) > 0.5


def test_word_spans_are_ordered_and_inside_the_audio(true_result):
    spans = [(w.start, w.end) for w in true_result.words]
    assert all(0.0 <= s <= e <= true_result.duration for s, e in spans)
    assert all(a[0] <= b[0] for a, b in pairwise(spans))
    # "country" is the last word, spoken in the last two seconds of the 11-s clip
    assert true_result.words[-1].start > 9.0


def test_three_swapped_words_are_flagged_and_no_others(tiny_en, jfk):
    text = _swapped(_true_text())
    result = practice(tiny_en, jfk, text)
    flagged = {w.word: w for w in result.words if w.verdict != OK}
    assert set(flagged) == {"yellow", "task", "county"}, [(w.word, w.label) for w in result.words]
    assert {w.word: (w.verdict, w.heard) for w in flagged.values()} == {
        "yellow": (REPLACED, "fellow"), "task": (REPLACED, "ask"), "county": (REPLACED, "country"),
    }
    assert all(w.probability < 0.05 for w in flagged.values())
    assert result.to_repeat == ["yellow", "task", "county"]
    assert 80 < result.score < 90  # 19 of 22 words


def test_an_unrelated_sentence_scores_low(tiny_en, jfk):
    result = practice(tiny_en, jfk, "The quick brown fox jumps over the lazy dog near the river bank.")
    assert result.score < 20
    assert sum(w.verdict == OK for w in result.words) <= 1


def test_typing_without_capitals_or_punctuation_is_not_a_pronunciation_fault(tiny_en, jfk):
    plain = re.sub(r"[^\w\s]", "", _true_text()).lower()
    result = practice(tiny_en, jfk, plain)
    assert [w.label for w in result.words if w.verdict != OK] == []


def test_verdict_rules_and_alignment():
    options = PracticeOptions()
    assert verdict_of("ask", 0.9, "ask", options) == (OK, False)
    assert verdict_of("ask", 0.1, "ask", options)[0] == "unclear"
    assert verdict_of("ask", 0.01, "task", options) == (REPLACED, True)
    assert verdict_of("ask", 0.01, None, options) == (MISSED, False)
    assert verdict_of("colour", 0.9, "color", options) == (OK, False)  # another spelling the model accepts
    assert align(["a", "b", "c", "d"], ["a", "x", "d"]) in ([0, 1, None, 2], [0, None, 1, 2])
    assert align(["a", "b"], []) == [None, None]
    units = units_of("“Well,” she said—yes.", "en")
    assert [u.key for u in units] == ["well", "she", "saidyes"] and units[0].display == "“Well,”"
    assert [u.key for u in units_of("換一首歌。", "zh")] == ["换", "一", "首", "歌"]


def test_reports(true_result):
    data = json.loads(render(true_result, "json"))
    assert data["score"] == 100.0 and data["to_repeat"] == [] and len(data["words"]) == 22
    assert set(data["words"][0]) == {"word", "start", "end", "probability", "verdict", "heard", "label"}
    table = render(true_result, "table")
    assert "score:     100 / 100" in table and "Americans," in table
    import numpy as np

    page = render(true_result, "html", np.zeros(16000, dtype=np.float32))
    assert page.count('class="w ok"') == 2 * 22 + 1  # sentence, table, legend
    assert 'src="data:audio/wav;base64,' in page and 'data-start="' in page
    assert "$" not in page.replace("$TINGXIE_CACHE", "")  # every placeholder filled


def test_cli_writes_the_report(tmp_path, jfk, capsys):
    from tingxie.cli import main

    out = tmp_path / "report.json"
    status = main(["practice", str(jfk), "--text", _swapped(_true_text()), "--language", "en", "--format", "json", "--output", str(out)])
    assert status == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["to_repeat"] == ["yellow", "task", "county"]
    assert "score" in capsys.readouterr().err


def test_cli_bad_input_is_one_clear_line(tmp_path, jfk, capsys):
    from tingxie.cli import main

    assert main(["practice", str(jfk), "--text", "  ...  "]) == 2
    assert main(["practice", str(jfk), "--text", "Bonjour", "--language", "fr"]) == 2  # tiny.en is English-only
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("tingxie: error: ") for line in err)
    assert "English-only" in err[1]


def test_server_practice_route(tiny_en, jfk):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from test_server_support import fast_settings

    from tingxie.server.app import create_app

    with TestClient(create_app(fast_settings(), loader=lambda name: tiny_en)) as client:
        audio = jfk.read_bytes()
        answer = client.post("/v1/practice", files={"file": ("jfk.flac", audio)}, data={"text": _swapped(_true_text())})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["to_repeat"] == ["yellow", "task", "county"] and body["model"] == "tiny.en"
        page = client.post("/v1/practice", files={"file": ("jfk.flac", audio)}, data={"text": _true_text(), "response_format": "html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "data:audio/wav;base64," in page.text
        bad = client.post("/v1/practice", files={"file": ("jfk.flac", audio)}, data={"text": "hello", "language": "klingon"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "language"
        noise = client.post("/v1/practice", files={"file": ("x.flac", b"not audio at all")}, data={"text": "hello"})
        assert noise.status_code == 400 and noise.json()["error"]["code"] == "invalid_audio"
        assert "/v1/practice" in client.get("/openapi.json").json()["paths"]
