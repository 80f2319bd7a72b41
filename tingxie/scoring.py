"""Word and character error rates (jiwer) after normalisation, and recall of domain terms.

Corpus WER = (substitutions + deletions + insertions) summed over all utterances / reference words
summed over all utterances, which is what ``jiwer.wer(list_of_refs, list_of_hyps)`` computes; CER
likewise over characters (spaces between words count as characters, as in jiwer). For languages
written without spaces (zh, ja, th, ...) the "words" are characters: their WER is a CER over the
text with its spaces removed. An utterance whose reference is empty scores its inserted words
(jiwer divides by max(1, reference words)).

Term recall: of the domain-term occurrences in the references, the share that the hypotheses
contain. Terms and texts are compared after the same normalisation (so case and punctuation do
not matter), as whole words: "lora" does not match inside "explorations". For character
languages a term matches anywhere. Each term listed for an utterance counts as many times as it
occurs in the reference (at least once); hits are capped at that count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .normalizers import CHARACTER_LANGUAGES, normalize, scoring_unit


@dataclass(frozen=True)
class UtteranceScore:
    reference: str  # normalised, as scored
    hypothesis: str
    wer: float
    cer: float
    reference_words: int
    errors: int  # substitutions + deletions + insertions, in scoring units
    terms: tuple[str, ...] = ()
    terms_hit: tuple[str, ...] = ()
    terms_missed: tuple[str, ...] = ()
    term_occurrences: int = 0
    term_hits: int = 0


@dataclass(frozen=True)
class Scores:
    wer: float
    cer: float
    unit: str  # 'word', 'character' (zh, ja, ...), or 'mixed'
    reference_words: int
    substitutions: int
    deletions: int
    insertions: int
    term_recall: float | None  # None when no utterance has terms
    term_hits: int
    term_occurrences: int
    utterances: tuple[UtteranceScore, ...]


def _tokens(normalised: str, language: str | None) -> str:
    return " ".join(normalised) if language in CHARACTER_LANGUAGES else normalised


def count_term(term: str, text: str, language: str | None) -> int:
    """Occurrences of a normalised term in a normalised text, whole words only (anywhere for character languages)."""
    if not term:
        return 0
    if language in CHARACTER_LANGUAGES:
        return text.count(term)
    return len(re.findall(rf"(?<!\S){re.escape(term)}(?!\S)", text))


def terms_in(reference: str, vocabulary: Sequence[str], language: str | None) -> tuple[str, ...]:
    """The terms of a vocabulary that occur in a (raw) reference."""
    ref = normalize(reference, language)
    return tuple(t for t in vocabulary if count_term(normalize(t, language), ref, language))


def _term_score(terms: Sequence[str], ref: str, hyp: str, language: str | None) -> tuple[tuple[str, ...], tuple[str, ...], int, int]:
    hit, missed, total, hits = [], [], 0, 0
    for term in dict.fromkeys(terms):  # a term listed twice counts by its occurrences, not twice over
        normalised = normalize(term, language)
        if not normalised:
            continue
        expected = max(1, count_term(normalised, ref, language))
        found = min(expected, count_term(normalised, hyp, language))
        total, hits = total + expected, hits + found
        (hit if found == expected else missed).append(term)
    return tuple(hit), tuple(missed), total, hits


def _as_list(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def score_pairs(references: Sequence[str], hypotheses: Sequence[str], language: str | None | Sequence[str | None] = "en",
                *, terms: Sequence[Sequence[str]] | None = None) -> Scores:
    """Score raw reference and hypothesis texts; ``language`` is one code or one per utterance; ``terms`` one tuple per utterance."""
    try:
        import jiwer
    except ImportError as e:  # an optional dependency: say how to get it rather than print a traceback
        from .errors import TingxieError

        raise TingxieError("scoring needs jiwer: pip install 'tingxie-asr[eval]'") from e

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    n = len(references)
    languages = _as_list(language, n)
    per_terms = list(terms) if terms is not None else [()] * n
    refs = [normalize(r, lang) for r, lang in zip(references, languages)]
    hyps = [normalize(h, lang) for h, lang in zip(hypotheses, languages)]
    ref_tokens = [_tokens(r, lang) for r, lang in zip(refs, languages)]
    hyp_tokens = [_tokens(h, lang) for h, lang in zip(hyps, languages)]
    utterances = []
    for ref, hyp, rt, ht, lang, listed in zip(refs, hyps, ref_tokens, hyp_tokens, languages, per_terms):
        words = jiwer.process_words(rt, ht)
        hit, missed, total, hits = _term_score(listed, ref, hyp, lang)
        utterances.append(UtteranceScore(
            reference=ref, hypothesis=hyp, wer=words.wer, cer=jiwer.cer(ref, hyp), reference_words=len(rt.split()),
            errors=words.substitutions + words.deletions + words.insertions, terms=tuple(listed),
            terms_hit=hit, terms_missed=missed, term_occurrences=total, term_hits=hits,
        ))
    corpus = jiwer.process_words(ref_tokens, hyp_tokens) if n else None
    units = {scoring_unit(lang) for lang in languages}
    occurrences = sum(u.term_occurrences for u in utterances)
    hits = sum(u.term_hits for u in utterances)
    return Scores(
        wer=corpus.wer if corpus else 0.0, cer=jiwer.cer(refs, hyps) if n else 0.0,
        unit=units.pop() if len(units) == 1 else "mixed", reference_words=sum(u.reference_words for u in utterances),
        substitutions=corpus.substitutions if corpus else 0, deletions=corpus.deletions if corpus else 0,
        insertions=corpus.insertions if corpus else 0, term_recall=hits / occurrences if occurrences else None,
        term_hits=hits, term_occurrences=occurrences, utterances=tuple(utterances),
    )
