"""Shallow fusion of a word n-gram language model (kenlm) into beam search.

Words are scored when they are complete: a token that begins with a space, or the end of text,
completes the word the beam was spelling. The completed word adds ``weight * ln P_lm(word | history)
+ bonus`` to that beam's fused score (kenlm gives log10; it is converted). A word ending in '.', '?'
or '!' also scores the end of sentence and starts a new one.

The LM must have been built on the same word form: lower-case, with punctuation other than inner
apostrophes removed (:func:`normalize_word`; ``scripts/make_lm.py`` normalises its text so).
Beams keep an explicit kenlm state each, so beam reordering is a matter of indices.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

LN10 = math.log(10)
_FIRST_TOKENS = 2048  # LoopStop._may_end's quick look (BPE ids: the commonest pieces first)
_NOT_WORD = re.compile(r"[^\w']+")
SENTENCE_END = (".", "?", "!", "。", "？", "！")


def normalize_word(text: str) -> str:
    """'Kubernetes,' -> 'kubernetes'; "don't" stays; punctuation-only text -> ''."""
    return _NOT_WORD.sub("", text.lower()).strip("'_")


def normalize_sentence(line: str) -> list[str]:
    """A line of text as the LM's words (whitespace-separated, each normalised, empties dropped)."""
    return [w for w in (normalize_word(t) for t in line.split()) if w]


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> Any:
    import kenlm  # optional dependency: pip install 'tingxie-asr[lm]'

    return kenlm.Model(path)


def load_language_model(path: str | Path) -> Any:
    """The kenlm model at ``path``, loaded once (cached by resolved path and modification time)."""
    resolved = Path(path).resolve()
    return _load(str(resolved), resolved.stat().st_mtime)


class LanguageModelScorer:
    """Natural-log word probabilities from a kenlm model, with the context passed as explicit states."""

    def __init__(self, model: Any):
        import kenlm

        self.model = model
        self._state = kenlm.State

    @classmethod
    def from_path(cls, path: str | Path) -> LanguageModelScorer:
        return cls(load_language_model(path))

    def begin(self) -> Any:
        """The state at the start of a sentence (<s>)."""
        state = self._state()
        self.model.BeginSentenceWrite(state)
        return state

    def score(self, state: Any, word: str) -> tuple[float, Any]:
        """(ln P(word | state), the state after it)."""
        out = self._state()
        return self.model.BaseScore(state, word, out) * LN10, out

    def end(self, state: Any) -> float:
        """ln P(</s> | state)."""
        return self.model.BaseScore(state, "</s>", self._state()) * LN10

    def sentence(self, words: list[str], eos: bool = True) -> float:
        """ln P of a whole sentence from <s>: the sum of the word scores (and </s>)."""
        state, total = self.begin(), 0.0
        for word in words:
            lp, state = self.score(state, word)
            total += lp
        return total + (self.end(state) if eos else 0.0)


@lru_cache(maxsize=8)
def word_start_tokens(tokenizer: Any) -> frozenset[int]:
    """Text tokens whose spelling begins with a space: each starts a new word."""
    encoding = tokenizer.encoding
    return frozenset(t for t in range(tokenizer.eot) if encoding.decode_single_token_bytes(t).startswith(b" "))


@dataclass(frozen=True)
class _Beam:
    state: Any  # kenlm state after the beam's completed words
    word: tuple[int, ...]  # tokens of the word being spelled
    total: float  # fused score of the completed words


class LanguageModelFusion:
    """The per-beam LM state for one decode; a ``SequenceScorer`` for :class:`BeamSearchSelector`.

    Works on token lists only (never on logits), so the same object serves beam search over torch tensors and
    NumPy arrays; it scores at word boundaries only (a word is complete when the next token starts a new one).
    """

    def __init__(self, scorer: LanguageModelScorer, tokenizer: Any, weight: float, bonus: float, n_rows: int):
        self.scorer, self.tokenizer = scorer, tokenizer
        self.weight, self.bonus = weight, bonus
        self.eot = tokenizer.eot
        self.word_starts = word_start_tokens(tokenizer)
        self.beams = [_Beam(scorer.begin(), (), 0.0)] * n_rows
        self._next: dict[tuple[int, int], _Beam] = {}

    def _complete(self, beam: _Beam) -> tuple[float, Any]:
        """(score added, state after) for completing the word the beam was spelling."""
        text = self.tokenizer.decode(beam.word)
        word = normalize_word(text)
        if not word:
            return 0.0, beam.state
        lp, state = self.scorer.score(beam.state, word)
        added = self.weight * lp + self.bonus
        if text.rstrip().endswith(SENTENCE_END):
            added += self.weight * self.scorer.end(state)
            state = self.scorer.begin()
        return added, state

    def step(self, beam: _Beam, token: int) -> _Beam:
        """The beam after appending ``token``."""
        if token == self.eot:
            added, state = self._complete(beam)
            return _Beam(state, (), beam.total + added)
        if token > self.eot:  # timestamps and other specials: the word goes on after them
            return beam
        if token in self.word_starts:
            added, state = self._complete(beam)
            return _Beam(state, (token,), beam.total + added)
        return _Beam(beam.state, beam.word + (token,), beam.total)

    def totals(self, candidates: list[list[int]]) -> list[list[float]]:
        self._next = {}
        out = []
        for row, tokens in enumerate(candidates):
            beam, completed = self.beams[row], None
            row_totals = []
            for token in tokens:
                if token == self.eot or (token < self.eot and token in self.word_starts):
                    completed = completed or self._complete(beam)  # the same word for every word-starting candidate
                    added, state = completed
                    nxt = _Beam(state, () if token == self.eot else (token,), beam.total + added)
                else:
                    nxt = self.step(beam, token)
                self._next[(row, token)] = nxt
                row_totals.append(nxt.total)
            out.append(row_totals)
        return out

    def advance(self, sources: list[int], tokens: list[int]) -> None:
        self.beams = [self._next.get((s, t)) or self.step(self.beams[s], t) for s, t in zip(sources, tokens)]
        self._next = {}

    def total(self, row: int) -> float:
        return self.beams[row].total


SURELY_EVERY = 4  # steps between sure-loop checks (each decodes every row's text); a sure loop found a few tokens late is the same dropped pass


class LoopStop:
    """A logit filter for a decode whose text is dropped if it loops (an LM-fused beam search, made again without
    the LM; a glossary's second pass, which the first pass then stands for): once every row's text loops
    (``repetition.loops``, checked every ``every`` steps from ``min_tokens``), only end of text is allowed. Such a
    decode fails the fallback checks whatever comes after; run on to the window's 224 tokens it had cost several whole
    decodes. ``max_words`` (a greedy second pass: ``glossary.second_pass_holds`` keeps none longer; ``loops=False``
    leaves the loop check out) ends one whose text has more words, for the same reason.

    ``surely`` (a pass at a temperature that another follows): the stop changes nothing that is kept. It waits until
    every row's text loops whatever it writes next (``repetition.surely_loops``; an ended sampled row: its own text
    loops) and, with ``beam_size``, it never stops a search that may have ended a hypothesis that does not loop (one
    whose row had end of text among its ``beam_size + 1`` best tokens): the search could still choose that one."""

    def __init__(self, tokenizer: Any, every: int = 1, min_tokens: int = 12, *, loops: bool = True, max_words: int | None = None,
                 surely: bool = False, beam_size: int | None = None):
        self.tokenizer, self.eot = tokenizer, tokenizer.eot
        self.every, self.min_tokens = every, min_tokens
        self.loops, self.max_words = loops, max_words
        self.surely, self.beam_size = surely, beam_size
        self.sample_begin: int | None = None
        self.stopped = False
        self.ended_open = False  # (surely, beams) a hypothesis that does not loop may have ended: never stop

    def apply(self, logits: Any, tokens: Any) -> None:
        if self.sample_begin is None:  # the first call sees the initial tokens only
            self.sample_begin = tokens.shape[1]
        if self.surely:
            self.stopped = self.stopped or self._surely_done(logits, tokens)
        else:
            sampled = tokens.shape[1] - self.sample_begin
            check_loops = self.loops and sampled >= self.min_tokens and sampled % self.every == 0
            if not self.stopped and (check_loops or self.max_words is not None):
                rows = tokens[:, self.sample_begin :].tolist()
                self.stopped = all(self._done(self._text(row), check_loops) for row in rows)
        if self.stopped:
            logits[:, : self.eot] = -math.inf
            logits[:, self.eot + 1 :] = -math.inf
            logits[:, self.eot] = 0.0

    def _text(self, row: list[int]) -> str:
        return self.tokenizer.decode([t for t in row if t < self.eot])

    def _done(self, text: str, check_loops: bool) -> bool:
        from .glossary import word_count
        from .repetition import loops

        # a half-written character (U+FFFD) may join two words once complete: the count waits for it
        if self.max_words is not None and "\ufffd" not in text and word_count(text) > self.max_words:
            return True
        return check_loops and loops(text)

    def _surely_done(self, logits: Any, tokens: Any) -> bool:
        from .repetition import loops, surely_loops

        if self.ended_open:
            return False
        texts: dict[int, str] = {}
        if self.beam_size is not None:
            for r in self._may_end(logits):
                texts[r] = self._text(tokens[r, self.sample_begin :].tolist())
                if not loops(texts[r]):
                    self.ended_open = True
                    return False
        if (tokens.shape[1] - self.sample_begin) % SURELY_EVERY:
            return False
        for r, row in enumerate(tokens[:, self.sample_begin :].tolist()):
            text = texts[r] if r in texts else self._text(row)
            ended = bool(row) and row[-1] == self.eot  # a sampled row that ended: its text is final
            if not (loops(text) if ended else surely_loops(text)):
                return False
        return True

    def _may_end(self, logits: Any) -> list[int]:
        """The rows with end of text among their beam_size + 1 best tokens (ties counted in: a candidate of beam
        search). The vocabulary's first tokens (the commonest words) rule most rows out at a fraction of the cost."""
        assert self.beam_size is not None
        ends = logits[:, self.eot : self.eot + 1]
        open_rows = np.flatnonzero((logits[:, :_FIRST_TOKENS] > ends).sum(axis=1) <= self.beam_size)
        if open_rows.size:
            open_rows = open_rows[(logits[open_rows] > ends[open_rows]).sum(axis=1) <= self.beam_size]
        return [r for r in open_rows.tolist() if logits[r, self.eot] > -math.inf]
