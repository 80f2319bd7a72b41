"""A glossary's second pass, made cheap: the drafted greedy decode (the first pass's tokens checked a run per decoder
call) gives the plain decode's tokens in fewer calls; the term evidence read along the chosen hypothesis only; a
spelled term's margin opens no second pass."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tingxie.decoding.decoder import decode
from tingxie.decoding.drafted import can_draft, decode_drafted, next_draft
from tingxie.decoding.glossary import MIN_MARGIN, make_glossary, second_pass_glossary
from tingxie.decoding.hotwords import TermEvidence
from tingxie.options import DecodingOptions
from tingxie.tokenizer import get_tokenizer

TOKENIZER = get_tokenizer(False)
V = 51864


def test_next_draft_follows_the_text_where_it_ends_as_the_draft_does():
    draft = [1, 2, 3, 4, 5, 6, 2, 3, 9]
    assert next_draft(draft, [7, 2, 3], 3) == [4, 5, 6]  # the last two tokens, at their first place in the draft
    assert next_draft(draft, [1, 2], 10) == [3, 4, 5, 6, 2, 3, 9]
    assert next_draft(draft, [8, 3], 3) == []  # the text left the draft
    assert next_draft(draft, [1], 3) == [] and next_draft(draft, [2, 3], 0) == []  # one token is too little to follow


class _Counting:
    """An engine that counts its decoder calls."""

    def __init__(self, engine):
        self.engine, self.calls = engine, 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def decode(self, *args, **kwargs):
        self.calls += 1
        return self.engine.decode(*args, **kwargs)


def test_drafted_decode_gives_the_plain_decode_in_fewer_calls(tiny_en, shared):
    from conftest import audio_path

    from tingxie.audio import N_FRAMES, decode_audio, pad_or_trim
    from tingxie.engine import window_features

    engine = _Counting(tiny_en.engine)
    tokenizer = tiny_en.tokenizer("en")
    mel = pad_or_trim(tiny_en.engine.log_mel(decode_audio(str(audio_path("comfyui_hotword")))), N_FRAMES)
    features = window_features(tiny_en.engine, mel)
    first = decode(engine, features, tokenizer, DecodingOptions(language="en", temperature=0.0))[0]
    # a second pass's options: the term in the prompt and boosted; the text changes where the first pass mis-spelled it
    second = DecodingOptions(language="en", temperature=0.0, hotwords=make_glossary("ComfyUI", None, 16), hotword_prompt_budget=16)
    assert can_draft(second, features) and not can_draft(replace(second, beam_size=5), features)
    engine.calls = 0
    plain = decode(engine, features, tokenizer, second)[0]
    plain_calls, engine.calls = engine.calls, 0
    run = decode_drafted(engine, features, tokenizer, second, first.tokens)
    drafted = run.result
    assert plain.text.count("ComfyUI") == 2 and "ComfyUI" not in first.text, (first.text, plain.text)
    assert drafted.tokens == plain.tokens and drafted.text == plain.text
    assert abs(drafted.avg_logprob - plain.avg_logprob) < 1e-3 and drafted.no_speech_prob == plain.no_speech_prob
    assert engine.calls < plain_calls, (engine.calls, plain_calls)  # the text around the terms came a run per call (10 of 17)
    if tiny_en.engine.drafts_exactly:  # the compiled int8 step: a call of several tokens is the single steps, bit for bit
        assert run.resume is None and (drafted.avg_logprob, drafted.sum_logprob) == (plain.avg_logprob, plain.sum_logprob)
    # an engine whose calls of several tokens round otherwise: made exact from where the draft was first tried, a step
    # at a time, to the plain decode's result to the last bit
    engine.drafts_exactly = False
    run = decode_drafted(engine, features, tokenizer, second, first.tokens)
    engine.calls = 0
    exact = run.exact()
    assert (exact.tokens, exact.avg_logprob, exact.sum_logprob) == (plain.tokens, plain.avg_logprob, plain.sum_logprob)
    assert 0 < engine.calls < plain_calls - 1  # not from the start (one call less would be the prompt's alone)
    # a draft the text never follows: every call one token, the plain decode's result as it is
    never = decode_drafted(engine, features, tokenizer, second, [tokenizer.eot - 1] * 3)
    assert never.resume is None and (never.result.tokens, never.result.sum_logprob) == (plain.tokens, plain.sum_logprob)


def test_on_the_compiled_int8_step_a_drafted_decode_is_the_plain_one_bit_for_bit(tiny_en_default, shared):
    """Users' default engine: where its calls of several tokens are the compiled step's (drafts_exactly), a kept greedy
    second pass is not decoded again: the drafted result already has the plain decode's tokens and scores."""
    from conftest import audio_path

    from tingxie.audio import N_FRAMES, decode_audio, pad_or_trim
    from tingxie.engine import window_features

    model = tiny_en_default
    if not model.engine.drafts_exactly:
        assert not getattr(model.engine, "native_step", None), "the compiled step is loaded but its drafts are not exact"
        return  # a CPU without the compiled int8 step: the resume path (the test above) serves
    tokenizer = model.tokenizer("en")
    features = window_features(model.engine, pad_or_trim(model.engine.log_mel(decode_audio(str(audio_path("comfyui_hotword")))), N_FRAMES))
    first = decode(model.engine, features, tokenizer, DecodingOptions(language="en", temperature=0.0))[0]
    second = DecodingOptions(language="en", temperature=0.0, hotwords=make_glossary("ComfyUI", None, 16), hotword_prompt_budget=16)
    plain = decode(model.engine, features, tokenizer, second)[0]
    run = decode_drafted(model.engine, features, tokenizer, second, first.tokens)
    assert run.resume is None and "ComfyUI" in plain.text
    assert (run.result.tokens, run.result.avg_logprob, run.result.sum_logprob) == (plain.tokens, plain.avg_logprob, plain.sum_logprob)


def test_term_evidence_on_a_path_leaves_the_other_beams_out():
    glossary = make_glossary("ComfyUI, Grafana", None, 0)
    evidence = TermEvidence(TOKENIZER, glossary)
    com, gra = TOKENIZER.encode(" Com")[0], TOKENIZER.encode(" Graf")[0]
    begin = [[50257, 50362, 50363]] * 2
    for row_tokens, near in [([[], []], (gra, 0)), ([[11], [12]], (com, 1))]:  # (rows' sampled tokens, (token, row))
        logits = np.zeros((2, V), np.float32)
        logits[:, 0] = 10.0
        logits[near[1], near[0]] = 9.0  # the term's first token 1 below the best, on one beam only
        evidence.apply(logits, np.asarray([b + r for b, r in zip(begin, row_tokens)], np.int64))
    on_first_beam = evidence.on_path([11, 0])
    assert evidence.margin("ComfyUI") == evidence.margin("Grafana") == -1.0  # over every beam
    assert on_first_beam("Grafana") == -1.0 and on_first_beam("ComfyUI") == -10.0  # ComfyUI was near on the other beam only
    assert evidence.on_path([99, 0])("ComfyUI") == -1.0  # a path the decode never wrote: every beam's margin


def test_term_evidence_on_a_path_reads_only_its_own_window_s_rows_in_a_batch():
    glossary = make_glossary("ComfyUI, Grafana", None, 0)
    evidence = TermEvidence(TOKENIZER, glossary)
    com, gra = TOKENIZER.encode(" Com")[0], TOKENIZER.encode(" Graf")[0]
    begin = [[50257, 50362, 50363]] * 4  # two windows of two beams, every row writing the same tokens
    for near in [(gra, 0), (com, 3)]:  # a term's first token near the best on one row of each window
        logits = np.zeros((4, V), np.float32)
        logits[:, 0] = 10.0
        logits[near[1], near[0]] = 9.0
        evidence.apply(logits, np.asarray([b + [11] * (near[1] // 3) for b in begin], np.int64))
    first, second = evidence.on_path([11, 0], slice(0, 2)), evidence.on_path([11, 0], slice(2, 4))
    assert (first("Grafana"), first("ComfyUI")) == (-1.0, -10.0) and (second("Grafana"), second("ComfyUI")) == (-10.0, -1.0)


def test_a_spelled_term_opens_no_second_pass():
    glossary = make_glossary("Kubernetes, Keycloak", None, 0)
    text = "She asked why Kubernetes needs key clock so much."
    margins = {"Kubernetes": 0.0, "Keycloak": MIN_MARGIN - 1}  # the spelled term's own tokens were the best
    assert second_pass_glossary(glossary, text, evidence=margins.get) is None
    margins["Keycloak"] = MIN_MARGIN
    assert set(second_pass_glossary(glossary, text, evidence=margins.get).terms) == {"Kubernetes", "Keycloak"}
