"""Temperature fallback: re-decode a window at higher temperatures while it looks like a failure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..engine import Engine, Features
from ..options import DecodingOptions, TranscribeOptions
from ..tokenizer import Tokenizer
from .decoder import decode
from .drafted import can_draft, decode_drafted
from .filters import LogitFilter
from .glossary import Glossary, second_pass_glossary, second_pass_holds, second_pass_max_words, second_pass_sample_len
from .hotwords import TermEvidence
from .lm import LoopStop
from .repetition import drop_looped_tail, loops
from .window import DecodingResult


def needs_fallback(result: DecodingResult, options: TranscribeOptions) -> bool:
    """Too repetitive (gzip's ratio, or a phrase looping: ``repetition.loops``) or too unlikely, unless it is simply silence."""
    failed = False
    if options.compression_ratio_threshold is not None and _repeats(result, options):  # the switch turns the loop check off too
        failed = True
    if options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold:
        failed = True
    if (
        options.no_speech_threshold is not None
        and result.no_speech_prob > options.no_speech_threshold
        and options.logprob_threshold is not None
        and result.avg_logprob < options.logprob_threshold
    ):
        failed = False
    return failed


def _repeats(result: DecodingResult, options: TranscribeOptions) -> bool:
    """The repetition half of ``needs_fallback``: gzip's ratio above the threshold, or a phrase looping
    (``repetition.loops``)."""
    return result.compression_ratio > options.compression_ratio_threshold or loops(result.text)


# a boost puts hypotheses in a beam in place of those it would have kept: 500 terms' ~670 boosted word starts changed words
# of unrelated speech (bench/RESULTS.md, issue 25, session of 2026-12-04, eighth); their terms come in by the second pass
BEAM_BOOST_MAX_TERMS = 100


def pass_window(options: TranscribeOptions, temperature: float) -> DecodingOptions:
    """The options of a window's decode at ``temperature`` (a glossary's second pass has its own): ``window_decoding``'s,
    without the glossary's boost for a beam search with more than ``BEAM_BOOST_MAX_TERMS`` terms."""
    window = options.window_decoding(temperature)
    if window.beam_size is not None and isinstance(window.hotwords, Glossary) and len(window.hotwords.terms) > BEAM_BOOST_MAX_TERMS:
        return replace(window, hotword_boost=0.0)
    return window


@dataclass(frozen=True)
class FirstPass:
    """A window's decode at the first temperature made already (VAD-batched chunks: one decode for the batch, with
    ``first_pass_filters``), and the glossary's term margins read along its text then (``TermEvidence.on_path``)."""

    result: DecodingResult
    margins: Callable[[str], float] | None = None


def first_pass_filters(tokenizer: Tokenizer, options: TranscribeOptions, window: DecodingOptions, evidence: TermEvidence | None) -> list[LogitFilter]:
    """The filters of a window's decode at the first temperature (``window``: its ``pass_window``), besides the caller's
    (``decode_with_fallback``)."""
    return _pass_filters(tokenizer, options, 0, window, evidence, None)


def _fused(window: DecodingOptions) -> bool:
    """Does this decode fuse the LM (beam search only)?"""
    return window.lm is not None and window.beam_size is not None


def _boosted(window: DecodingOptions) -> bool:
    """Does this decode boost a glossary's tokens?"""
    return bool(window.hotwords) and window.hotword_boost > 0


def _pass_filters(tokenizer: Tokenizer, options: TranscribeOptions, index: int, window: DecodingOptions, evidence: TermEvidence | None,
                  generator: np.random.Generator | None) -> list[LogitFilter]:
    """The term recorder and the loop stop of the decode at ``options.temperature[index]`` (``window``)."""
    recorder = [evidence] if evidence is not None else []
    if (_fused(window) or _boosted(window)) and options.compression_ratio_threshold is not None:
        # a boosted pass's stop reads its text every 4 steps (every step: ~40 ms of a greedy real_concat run; a looping
        # boosted pass is decoded again anyway, so a few more steps change nothing kept)
        return [*recorder, LoopStop(tokenizer, every=1 if _fused(window) else 4)]
    return [*recorder, *_sure_stop(tokenizer, options, index, window.beam_size, generator)]


def _sure_stop(tokenizer: Tokenizer, options: TranscribeOptions, index: int, beam_size: int | None,
               generator: np.random.Generator | None = None) -> list[LogitFilter]:
    """A pass that another temperature follows is dropped if it loops: it ends once it surely does (no kept text
    changes); a fresh stop per decode (it keeps its decode's state)."""
    temperature = options.temperature[index]
    # (a shared generator's later draws would shift with a sampled pass cut short; without one each decode seeds its own)
    if options.compression_ratio_threshold is not None and index + 1 < len(options.temperature) and (generator is None or temperature == 0):
        return [LoopStop(tokenizer, surely=True, beam_size=beam_size)]
    return []


def decode_with_fallback(
    engine: Engine,
    features: Features,
    tokenizer: Tokenizer,
    options: TranscribeOptions,
    prompt: list[int] | None = None,
    *,
    extra_filters: list[LogitFilter] | None = None,
    generator: np.random.Generator | None = None,
    first: FirstPass | None = None,
) -> DecodingResult:
    """Decode one window's features, trying each temperature in turn; ``first``: its decode at the first temperature,
    made already (with ``first_pass_filters``), goes on from there the same way."""
    result: DecodingResult | None = None
    margins: Callable[[str], float] | None = None
    evidence = term_evidence(tokenizer, options)
    checked = options.compression_ratio_threshold is not None  # a loop fails needs_fallback
    for i, temperature in enumerate(options.temperature):
        window = replace(pass_window(options, temperature), prompt=tuple(prompt) if prompt else None)
        if i == 0 and first is not None:
            result, margins = first.result, first.margins
        else:
            filters = [*(extra_filters or []), *_pass_filters(tokenizer, options, i, window, evidence, generator)]
            result = decode(engine, features, tokenizer, window, extra_filters=filters, generator=generator)[0]
            margins = evidence.on_path(result.tokens) if evidence is not None else None
        # the LM made a loop or an unlikely text (a word spelled on and on is never scored), or the glossary's boost a
        # loop (a boosted beam ran "hogg-hogg-..." to 224 tokens where the plain one did not): the same decode without them
        if (_fused(window) and needs_fallback(result, options)) or (_boosted(window) and checked and _repeats(result, options)):
            recorder = [evidence] if evidence is not None else []
            plain = decode(engine, features, tokenizer, replace(window, lm=None, hotwords=None, hotwords_file=None),
                           extra_filters=[*(extra_filters or []), *recorder, *_sure_stop(tokenizer, options, i, window.beam_size, generator)],
                           generator=generator)[0]
            if not needs_fallback(plain, options):
                result, margins = plain, (evidence.on_path(plain.tokens) if evidence is not None else None)
        if not needs_fallback(result, options):
            break
    assert result is not None
    result = second_pass(engine, features, tokenizer, options, prompt, result, extra_filters, generator, margins)
    # with one temperature (no fallback asked for: the reference's outputs, as the golden tests check) a loop stays
    looping_checked = checked and len(options.temperature) > 1
    return drop_looped_tail(result, tokenizer) if looping_checked else result


def second_pass(engine: Engine, features: Features, tokenizer: Tokenizer, options: TranscribeOptions, prompt: list[int] | None,
                result: DecodingResult, extra_filters: list[LogitFilter] | None, generator: np.random.Generator | None,
                margins: Callable[[str], float] | None = None) -> DecodingResult:
    """With a glossary, the window decoded again (same features) with only the terms its text seems to mis-spell in
    the prompt (and, given ``margins``, the first pass's term evidence along its text: ``TermEvidence.on_path``, that
    the model considered), kept where it spells one and has about as many words (``glossary.second_pass_holds``); else
    ``result``. Greedy second passes take the first pass's tokens as a draft to decide; only a kept one costs a whole
    decode."""
    glossary = options.decoding.hotwords
    if not isinstance(glossary, Glossary) or not options.decoding.hotword_second_pass:
        return result
    narrowed = second_pass_glossary(glossary, result.text, evidence=margins)
    if narrowed is None:
        return result
    cap = second_pass_sample_len(len(result.tokens), len(tokenizer.encode(" " + ", ".join(narrowed.terms))))
    window = replace(options.window_decoding(result.temperature), prompt=tuple(prompt) if prompt else None, hotwords=narrowed,
                     hotword_prompt_budget=narrowed.prompt_budget, sample_len=min(cap, options.decoding.sample_len or cap))
    # a looping second pass fails needs_fallback below whatever follows: it ends there, not at the cap; a greedy one
    # ends too once it has more words than second_pass_holds keeps (with beams an earlier finished one may be chosen)
    loop_stop, greedy = options.compression_ratio_threshold is not None, can_draft(window, features)
    max_words = second_pass_max_words(result.text) if greedy else None
    filters = lambda: [*(extra_filters or []), LoopStop(tokenizer, loops=loop_stop, max_words=max_words)]  # noqa: E731  (fresh per decode)

    def kept(again: DecodingResult) -> bool:  # one cut short ran on past what second_pass_holds keeps
        return len(again.tokens) < window.sample_len and not needs_fallback(again, options) and second_pass_holds(result.text, again.text, narrowed)

    if greedy:  # most second passes are dropped: a drafted one decides, cheaply (drafted.py)
        drafted = decode_drafted(engine, features, tokenizer, window, result.tokens, extra_filters=filters())
        if not kept(drafted.result):
            return result
        # kept: made exact from where it left the plain decode (a drafted call's logits differ by rounding: on the
        # 500-term held-out set one kept text of 15 changed, none of the choices to keep)
        again = drafted.exact()
        return again if kept(again) else result
    again = decode(engine, features, tokenizer, window, extra_filters=filters(), generator=generator)[0]
    return again if kept(again) else result


def term_evidence(tokenizer: Tokenizer, options: TranscribeOptions) -> TermEvidence | None:
    """A recorder of how near the first pass came to each glossary term, where a second pass may follow."""
    glossary = options.decoding.hotwords
    if not isinstance(glossary, Glossary) or not options.decoding.hotword_second_pass:
        return None
    return TermEvidence(tokenizer, glossary)
