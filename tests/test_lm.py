"""The n-gram LM: scripts/make_lm.py writes an ARPA model kenlm reads with the same probabilities
(each history's distribution sums to 1), the scorer's states, and its fusion into beam search."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
from test_decoding_beam import EagerModel, features, model  # noqa: F401  (module fixtures)

from tingxie.decoding.decoder import decode
from tingxie.decoding.lm import LanguageModelFusion, LanguageModelScorer, load_language_model, normalize_sentence, normalize_word
from tingxie.errors import OptionError
from tingxie.options import DecodingOptions, build_options
from tingxie.tokenizer import get_tokenizer

kenlm = pytest.importorskip("kenlm", reason="kenlm is in the test extra (tingxie-asr[lm])")
REPO = Path(__file__).resolve().parents[1]
TOKENIZER = get_tokenizer(False)
CORPUS = """We run the service on Kubernetes.
Use kubectl to read the logs.
The Kubernetes cluster has three nodes.
Open ComfyUI and load the workflow.
The ComfyUI folder holds the models.
We checked the cluster again!
"""


def _make_lm():
    spec = importlib.util.spec_from_file_location("make_lm", REPO / "scripts" / "make_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def arpa(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lm")
    (folder / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_lm.py"), str(folder / "corpus.txt"), str(folder / "t.arpa")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return folder / "t.arpa"


def unigrams(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\\1-grams:")[1].split("\\2-grams:")[0].strip().splitlines()
    return [line.split("\t")[1] for line in lines if line.split("\t")[1] != "<s>"]


def test_normalisation():
    assert normalize_word("Kubernetes,") == "kubernetes" and normalize_word("don't") == "don't" and normalize_word(" -") == ""
    assert normalize_sentence("We checked the cluster again!") == ["we", "checked", "the", "cluster", "again"]


@pytest.mark.parametrize("history", [[], ["the"], ["the", "kubernetes"], ["never", "seen"], ["open", "comfyui"]])
def test_kenlm_reads_the_arpa_and_each_history_sums_to_one(arpa, history):
    scorer = LanguageModelScorer.from_path(arpa)
    state = scorer.begin()
    for word in history:
        _, state = scorer.score(state, word)
    total = sum(math.exp(scorer.score(state, w)[0]) for w in unigrams(arpa))
    assert total == pytest.approx(1.0, abs=1e-4)


def test_kenlm_gives_the_builders_probabilities(arpa):
    builder = _make_lm().KneserNey([normalize_sentence(line) for line in CORPUS.splitlines()], 3)
    scorer = LanguageModelScorer.from_path(arpa)
    words = ["the", "kubernetes", "cluster", "has", "zzz", "nodes"]
    state, context = scorer.begin(), ("<s>",)
    for word in words:
        lp, state = scorer.score(state, word)
        expected = builder.prob(word if word in builder.vocab else "<unk>", context)
        assert lp == pytest.approx(math.log(expected), abs=1e-4)
        context = (*context, word)
    sentence = "the kubernetes cluster has three nodes"
    assert scorer.sentence(sentence.split()) == pytest.approx(load_language_model(arpa).score(sentence) * math.log(10), abs=1e-4)


def test_model_is_loaded_once(arpa):
    assert load_language_model(arpa) is load_language_model(str(arpa))


def test_fusion_scores_words_when_they_complete(arpa):
    scorer = LanguageModelScorer.from_path(arpa)
    fusion = LanguageModelFusion(scorer, TOKENIZER, weight=0.5, bonus=0.25, n_rows=2)
    the, ku = TOKENIZER.encode(" the"), TOKENIZER.encode(" Kubernetes")
    # row 0 spells " the Kubernetes" then ends; row 1 stays at the start
    for token in the + ku:
        totals = fusion.totals([[token], [token]])
        fusion.advance([0, 1], [token, token])
    assert totals[0][0] == pytest.approx(0.5 * scorer.score(scorer.begin(), "the")[0] + 0.25)  # " Ku..." completed "the"
    end = fusion.totals([[TOKENIZER.eot], [TOKENIZER.eot]])[0][0]
    lp_the, state = scorer.score(scorer.begin(), "the")
    lp_ku, _ = scorer.score(state, "kubernetes")
    assert end == pytest.approx(0.5 * (lp_the + lp_ku) + 2 * 0.25)
    # beams are reordered by index: both new rows continue row 0
    fusion.advance([0, 0], [TOKENIZER.eot, TOKENIZER.eot])
    assert fusion.total(0) == fusion.total(1) == pytest.approx(end)


def test_sentence_end_resets_the_history(arpa):
    scorer = LanguageModelScorer.from_path(arpa)
    fusion = LanguageModelFusion(scorer, TOKENIZER, weight=1.0, bonus=0.0, n_rows=1)
    for token in TOKENIZER.encode(" again! We"):
        fusion.advance([0], [token])
    lp_again, state = scorer.score(scorer.begin(), "again")
    assert fusion.total(0) == pytest.approx(lp_again + scorer.end(state))


def test_lm_options_are_checked(arpa, tmp_path, monkeypatch):
    with pytest.raises(OptionError, match="not found"):
        DecodingOptions(lm=str(tmp_path / "missing.arpa"), beam_size=5)
    with pytest.raises(OptionError, match="beam_size"):
        DecodingOptions(lm=str(arpa))
    options = build_options(lm=str(arpa), lm_weight=0.4, lm_bonus=1.0, beam_size=5)
    assert options.decoding.lm_weight == 0.4 and options.window_decoding(0.6).beam_size is None  # sampled windows: no LM
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kenlm" else importlib.util.find_spec(name, *a))
    with pytest.raises(OptionError, match=r"pip install 'tingxie-asr\[lm\]'"):
        DecodingOptions(lm=str(arpa), beam_size=5)


def test_beam_search_with_lm_cached_equals_eager_and_zero_weight_changes_nothing(model, features, arpa):  # noqa: F811
    def run(m, **kw):
        results = decode(m, features, TOKENIZER, DecodingOptions(language="en", beam_size=3, **kw))
        return [(r.tokens, r.sum_logprob) for r in results]

    fused = run(model, lm=str(arpa), lm_weight=1.0, lm_bonus=0.5)
    assert fused == [(t, pytest.approx(s, abs=1e-3)) for t, s in run(EagerModel(model), lm=str(arpa), lm_weight=1.0, lm_bonus=0.5)]
    assert run(model, lm=str(arpa), lm_weight=0.0, lm_bonus=0.0) == run(model)


def test_real_tiny_en_with_lm_and_hotwords(tiny_en, shared, arpa):
    from conftest import audio_path

    text = tiny_en.transcribe(audio_path("comfyui_hotword"), beam_size=5, lm=str(arpa), hotwords="ComfyUI", hotword_prompt_budget=16).text
    assert text.count("ComfyUI") == 2, text


def test_a_window_the_lm_makes_loop_is_decoded_again_without_it(arpa, monkeypatch):
    """A word spelled on and on ('hogg-hogg-...') is never scored by the LM: such a window is decoded again by the same
    beam search without the LM before any fallback to sampling."""
    from tingxie.decoding import fallback
    from tingxie.decoding.window import DecodingResult, compression_ratio

    def fake_decode(engine, window_features, tokenizer, options, **kw):
        text = "rough" + "-hogg" * 40 if options.lm else "Grafana started much faster."
        calls.append((options.lm, options.temperature, options.beam_size))
        return [DecodingResult([1], text, "en", -0.2, 0.0, options.temperature, compression_ratio(text))]

    calls: list = []
    monkeypatch.setattr(fallback, "decode", fake_decode)
    options = build_options(beam_size=5, lm=str(arpa))
    result = fallback.decode_with_fallback(None, None, TOKENIZER, options)
    assert result.text == "Grafana started much faster." and calls == [(str(arpa), 0.0, 5), (None, 0.0, 5)]


@pytest.mark.parametrize("temperature", [0.0, (0.0, 0.2)])
def test_a_window_the_glossary_boost_makes_loop_is_decoded_again_without_it(monkeypatch, temperature):
    """A boosted decode that loops ('Bluff-Hogg-Hogg-...') is decoded again without the glossary at the same
    temperature, even with no temperature to fall back to; a boosted text that is only unlikely is kept."""
    from tingxie.decoding import fallback
    from tingxie.decoding.window import DecodingResult, compression_ratio

    def fake_decode(engine, window_features, tokenizer, options, **kw):
        boosted = bool(options.hotwords)
        text = ("Bluff" + "-Hogg" * 40 if loop else "Grafana started faster.") if boosted else "Graph Anna started much faster."
        calls.append((boosted, options.temperature))
        return [DecodingResult([1], text, "en", -1.5 if boosted else -0.2, 0.0, options.temperature, compression_ratio(text))]

    options = build_options(beam_size=5, hotwords="Grafana, Kubernetes", hotword_second_pass=False, temperature=temperature,
                            logprob_threshold=None)
    monkeypatch.setattr(fallback, "decode", fake_decode)
    for loop, expected, decodes in ((True, "Graph Anna started much faster.", [(True, 0.0), (False, 0.0)]), (False, "Grafana started faster.", [(True, 0.0)])):
        calls: list = []
        assert fallback.decode_with_fallback(None, None, TOKENIZER, options).text == expected and calls == decodes


def test_a_window_decoded_in_a_batch_goes_on_as_a_sequential_one(monkeypatch):
    """VAD-batched chunks: the batch's decode is each window's first pass; a boosted one that loops is decoded again
    without the glossary at that temperature, as decode_with_fallback does for a window decoded alone, and the first
    pass is not decoded again."""
    from tingxie.decoding import fallback
    from tingxie.decoding.window import DecodingResult, compression_ratio

    def result(text: str, temperature: float = 0.0) -> DecodingResult:
        return DecodingResult([1], text, "en", -0.2, 0.0, temperature, compression_ratio(text))

    def fake_decode(engine, window_features, tokenizer, options, **kw):
        calls.append((bool(options.hotwords), options.temperature))
        return [result("Graph Anna started much faster.", options.temperature)]

    monkeypatch.setattr(fallback, "decode", fake_decode)
    options = build_options(beam_size=5, hotwords="Grafana, Kubernetes", hotword_second_pass=False)
    looping, calls = fallback.FirstPass(result("Bluff" + "-Hogg" * 40)), []
    assert fallback.decode_with_fallback(None, None, TOKENIZER, options, first=looping).text == "Graph Anna started much faster."
    assert calls == [(False, 0.0)]
    calls = []
    assert fallback.decode_with_fallback(None, None, TOKENIZER, options, first=fallback.FirstPass(result("Grafana started."))).text == "Grafana started."
    assert calls == []


def test_loop_stop_ends_a_search_only_once_every_beam_loops():
    import numpy as np

    from tingxie.decoding.lm import LoopStop

    stop = LoopStop(TOKENIZER, every=1, min_tokens=4)
    begin = [TOKENIZER.sot] * 3
    looping = TOKENIZER.encode(" Splunk, Splunk, Splunk, Splunk, Splunk, Splunk")
    plain = TOKENIZER.encode(" We run the service on Kubernetes, and then we checked the three nodes of the cluster again today")[: len(looping)]
    logits = np.zeros((2, 51864), np.float32)
    stop.apply(logits, np.asarray([begin, begin]))  # the first call: the initial tokens
    stop.apply(logits, np.asarray([begin + looping, begin + plain]))
    assert not stop.stopped and (logits == 0).all()  # one beam still speaks
    stop.apply(logits, np.asarray([begin + looping, begin + looping]))
    assert stop.stopped and logits[:, TOKENIZER.eot].tolist() == [0.0, 0.0] and np.isinf(logits[:, : TOKENIZER.eot]).all()


def test_loop_stop_ends_a_greedy_second_pass_with_more_words_than_it_may_keep():
    import numpy as np

    from tingxie.decoding.glossary import second_pass_max_words
    from tingxie.decoding.lm import LoopStop
    from tingxie.decoding.repetition import _some_word_thrice, loops, words_of

    def _may_loop(text: str) -> bool:  # the cheap check inside repetition.loops
        return _some_word_thrice(words_of(text))

    first = "And to the end of the break come to you much faster."
    stop = LoopStop(TOKENIZER, loops=False, max_words=second_pass_max_words(first))  # 12 words + 2
    begin = [TOKENIZER.sot] * 3
    logits = np.zeros((1, 51864), np.float32)
    stop.apply(logits, np.asarray([begin]))
    words = TOKENIZER.encode(" And Thaddeus, ComfyUI, Stoddeus, Mudge and Thaddeus started it much faster, and then we")  # 14 words
    stop.apply(logits, np.asarray([begin + words]))
    assert not stop.stopped
    stop.apply(logits, np.asarray([begin + words + TOKENIZER.encode(" some")]))
    assert stop.stopped and logits[0, TOKENIZER.eot] == 0.0 and np.isinf(logits[0, : TOKENIZER.eot]).all()
    # the cheap check before repetition.loops: a word three times is where a loop can begin
    for text in ("Splunk, Splunk, Splunk, Splunk, Splunk", "the the the", "a b c a b c a b c", "We run the cluster on Kubernetes today."):
        assert _may_loop(text) or not loops(text)
    assert not _may_loop("We run the cluster on Kubernetes today.") and _may_loop("Splunk, splunk. SPLUNK")
