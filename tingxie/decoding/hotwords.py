"""Hotwords: bias decoding towards given spellings (names, jargon) by prompt and by logit boosting.

Each hotword's spellings (" Kubernetes" after a space, "Kubernetes" at the start of the text, and the first letter
capitalised) are tokenized into a trie. At every step a beam's sampled tokens are matched from their end against the
trie: every token that would continue a hotword already begun gets ``boost`` (times the term's weight) added to its
logit, and the first token of every hotword gets half of it wherever a word can start (a full boost there made tiny.en
insert hotwords into unrelated speech). A completed hotword boosts nothing more, so the bias is local to the words.

A glossary (:class:`~tingxie.decoding.glossary.Glossary`) puts only a budget of whole terms in the prompt: a long
list there makes small models write lists (60 terms: held-out WER 57 -> 92 % on tiny.en, see bench/ADAPT.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

from .filters import LogitFilter
from .glossary import Glossary, parse_terms, seen_terms


def parse_hotwords(hotwords: str | Sequence[str] | Glossary | None) -> tuple[str, ...]:
    """'Kubernetes, ComfyUI:2' -> ('Kubernetes', 'ComfyUI'): the terms, comma-separated, stripped, duplicates dropped."""
    if isinstance(hotwords, Glossary):
        return hotwords.terms
    return tuple(dict.fromkeys(term for term, _ in parse_terms(hotwords)))


def as_glossary(hotwords: str | Sequence[str] | Glossary, prompt_budget: int) -> Glossary:
    """A glossary as given, or one of plain hotwords (weight 1) with ``prompt_budget``."""
    if isinstance(hotwords, Glossary):
        return hotwords
    merged = dict(parse_terms(hotwords))
    return Glossary(tuple(merged), tuple(merged.values()), prompt_budget)


def hotword_prompt_tokens(tokenizer, hotwords: str | Sequence[str] | Glossary, prompt: Sequence[int], limit: int) -> list[int]:
    """The hotwords as text before the previous-text prompt (as faster-whisper does), ``limit`` tokens at most.

    Plain hotwords are all put in, cut at ``limit``. A glossary puts in whole terms within its prompt budget (see
    :func:`glossary_prompt`). The previous text is cut from its start to fit.
    """
    if isinstance(hotwords, Glossary):
        previous = tokenizer.decode([t for t in prompt if t < tokenizer.eot]) if prompt else ""
        hot = list(glossary_prompt(tokenizer, hotwords, seen_terms(hotwords.terms, previous), min(limit, hotwords.prompt_budget)))
    else:
        words = parse_hotwords(hotwords)
        hot = tokenizer.encode(" " + ", ".join(words))[:limit] if words else []
    room = limit - len(hot)
    return hot + (list(prompt)[-room:] if room > 0 and prompt else [])


@lru_cache(maxsize=64)
def glossary_prompt(tokenizer, glossary: Glossary, seen: frozenset[str], budget: int) -> tuple[int, ...]:
    """Tokens of ' term1, term2, ...' within ``budget``: the whole glossary where it fits; of a longer one only the
    terms already seen (by weight). A list of terms that are not said makes tiny models write lists (bench/ADAPT.md:
    32 tokens of a 60-term glossary took held-out WER from 57 to 103 %), and a long glossary cannot say which are."""
    whole = tokenizer.encode(" " + ", ".join(glossary.terms))
    if len(whole) <= budget:
        return tuple(whole)
    order = sorted((i for i, t in enumerate(glossary.terms) if t in seen), key=lambda i: (-glossary.weights[i], i))
    chosen: list[str] = []
    tokens: list[int] = []
    for i in order:
        candidate = tokenizer.encode(" " + ", ".join([*chosen, glossary.terms[i]]))
        if len(candidate) <= budget:  # a term that does not fit is skipped: shorter ones after it still may
            chosen.append(glossary.terms[i])
            tokens = candidate
    return tuple(tokens)


def spellings(word: str) -> list[str]:
    """The word as given and with its first letter capitalised (it may begin a sentence)."""
    variants = [word, word[:1].upper() + word[1:]]
    return list(dict.fromkeys(variants))


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    terminal: bool = False
    weight: float = 0.0  # the largest weight of the terms through this node


class TokenTrie:
    """A trie of token sequences: which tokens continue a sequence already begun, and with what weight."""

    def __init__(self, sequences: Iterable[Sequence[int]] = (), weights: Iterable[float] | None = None):
        self.root = _Node()
        self.max_len = 0
        for seq, weight in zip(sequences, weights if weights is not None else iter(lambda: 1.0, None)):
            self.add(seq, weight)

    def add(self, sequence: Sequence[int], weight: float = 1.0) -> None:
        node = self.root
        for token in sequence:
            node = node.children.setdefault(int(token), _Node())
            node.weight = max(node.weight, weight)
        node.terminal = True
        self.max_len = max(self.max_len, len(sequence))

    def find(self, sequence: Sequence[int]) -> _Node | None:
        """The node reached by following ``sequence`` from the root, or None if it is no hotword's beginning."""
        node = self.root
        for token in sequence:
            node = node.children.get(token)
            if node is None:
                return None
        return node

    def first_tokens(self) -> list[int]:
        return sorted(self.root.children)


class HotwordBoost(LogitFilter):
    """Add ``boost`` x the term's weight to the logits of tokens that continue a hotword, half of that to those that
    begin one.

    ``word_trie`` holds the spellings after a space (matched anywhere); ``start_trie`` those without (matched only
    where the text starts: at ``sample_begin`` or right after a timestamp). Tokens at or above ``special_begin`` (end of
    text, timestamps) end any match.
    """

    def __init__(self, word_trie: TokenTrie, start_trie: TokenTrie, boost: float, sample_begin: int, special_begin: int):
        self.word_trie, self.start_trie = word_trie, start_trie
        self.boost = boost
        self.start_boost = boost / 2  # a word start is weaker evidence than a hotword already begun
        self.sample_begin = sample_begin
        self.special_begin = special_begin
        self.max_len = max(word_trie.max_len, start_trie.max_len)
        self.word_starts = {t: self.start_boost * n.weight for t, n in word_trie.root.children.items()}
        self.text_starts = {**{t: self.start_boost * n.weight for t, n in start_trie.root.children.items()}, **self.word_starts}
        # the start bonuses as arrays, added to a row at once: with 500 terms a dict per row and step cost ~1 ms
        self._starts = {key: (np.fromiter(d, np.int64, len(d)), np.fromiter(d.values(), np.float32, len(d)))
                        for key, d in ((False, self.word_starts), (True, self.text_starts))}
        self._torch_starts: dict = {}

    def bonuses(self, sampled: Sequence[int]) -> dict[int, float]:
        """Token -> bonus after ``sampled`` (this row's tokens since sample_begin)."""
        at_start = not sampled or sampled[-1] >= self.special_begin
        out = {} if self.just_completed(sampled) else dict(self.text_starts if at_start else self.word_starts)
        out.update(self.continuations(sampled))
        return out

    def just_completed(self, sampled: Sequence[int]) -> bool:
        """Does ``sampled`` end with a whole hotword? Then no hotword start is boosted next: with a strong boost the
        term was otherwise written again and again (tiny.en, boost 6: held-out WER 244 %)."""
        for k in range(1, min(self.max_len, len(sampled)) + 1):
            if sampled[-k] >= self.special_begin:
                return False
            starts_text = len(sampled) == k or sampled[-k - 1] >= self.special_begin
            for trie in (self.word_trie, self.start_trie) if starts_text else (self.word_trie,):
                node = trie.find(sampled[-k:])
                if node is not None and node.terminal:
                    return True
        return False

    def continuations(self, sampled: Sequence[int]) -> dict[int, float]:
        """Tokens that continue a hotword begun at the end of ``sampled``, with their bonus."""
        out: dict[int, float] = {}
        for k in range(1, min(self.max_len, len(sampled)) + 1):
            suffix = sampled[-k:]
            if suffix[0] >= self.special_begin:
                break  # a hotword never spans a timestamp or the end of text
            starts_text = len(sampled) == k or sampled[-k - 1] >= self.special_begin
            for trie in (self.word_trie, self.start_trie) if starts_text else (self.word_trie,):
                node = trie.find(suffix)
                if node is not None:
                    for token, child in node.children.items():
                        out[token] = max(out.get(token, 0.0), self.boost * child.weight)
        return out

    def apply(self, logits: Tensor, tokens: Tensor) -> None:
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        numpy = isinstance(logits, np.ndarray)  # ONNX Runtime path (NumPy 2 arrays have .device too)
        for row, sampled in enumerate(tokens[:, self.sample_begin :].tolist()):
            at_start = not sampled or sampled[-1] >= self.special_begin
            starts = self.text_starts if at_start else self.word_starts
            if self.just_completed(sampled):
                starts = {}
            else:
                index, bonus = self._starts[at_start] if numpy else self._torch_starts_of(at_start, logits)
                logits[row, index] += bonus.astype(logits.dtype, copy=False) if numpy else bonus.to(logits.dtype)
            for token, value in self.continuations(sampled).items():  # a continuation's bonus replaces its start bonus
                rows.append(row)
                cols.append(token)
                values.append(value - starts.get(token, 0.0))
        if rows and numpy:  # (row, col) pairs are unique
            logits[rows, cols] += np.asarray(values, dtype=logits.dtype)
        elif rows:
            import torch

            index = (torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device))
            logits[index] += torch.tensor(values, device=logits.device, dtype=logits.dtype)

    def _torch_starts_of(self, at_start: bool, logits: Tensor) -> tuple:
        key = (at_start, str(logits.device))
        if key not in self._torch_starts:
            import torch

            index, bonus = self._starts[at_start]
            self._torch_starts[key] = (torch.from_numpy(index).to(logits.device), torch.from_numpy(bonus).to(logits.device))
        return self._torch_starts[key]


@lru_cache(maxsize=32)
def hotword_tries(tokenizer, hotwords: tuple[str, ...], weights: tuple[float, ...] | None = None) -> tuple[TokenTrie, TokenTrie]:
    """(after-a-space trie, start-of-text trie) of the hotwords' spellings; cached per tokenizer and list."""
    weights = weights or (1.0,) * len(hotwords)
    variants = [(v, w) for term, w in zip(hotwords, weights) for v in spellings(term)]
    word = TokenTrie((tokenizer.encode(" " + v) for v, _ in variants), (w for _, w in variants))
    start = TokenTrie((tokenizer.encode(v) for v, _ in variants), (w for _, w in variants))
    return word, start


def hotword_filter(tokenizer, hotwords: str | Sequence[str] | Glossary, boost: float, sample_begin: int) -> HotwordBoost | None:
    """The boosting filter for these hotwords, or None when there is nothing to boost."""
    glossary = as_glossary(hotwords, 0)
    if not glossary.terms or boost == 0:
        return None
    word, start = hotword_tries(tokenizer, glossary.terms, glossary.weights)
    return HotwordBoost(word, start, boost, sample_begin, tokenizer.eot)


@lru_cache(maxsize=32)
def _first_tokens(tokenizer, terms: tuple[str, ...]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(the distinct first tokens of the terms' spellings, per term the positions of its own in that array)."""
    firsts = [sorted({tokenizer.encode(space + v)[0] for v in spellings(t) for space in (" ", "")}) for t in terms]
    index = np.asarray(sorted({x for f in firsts for x in f}), np.int64)
    where = {int(x): i for i, x in enumerate(index)}
    return index, tuple(np.asarray([where[x] for x in f], np.int64) for f in firsts)


class TermEvidence(LogitFilter):
    """How near a decode came to beginning each glossary term: per term, the largest margin (the logit of one of its
    first tokens less its row's best, after the other filters) over every step and row seen, and per step of the last
    decode each row's margins, to read them along one hypothesis (``on_path``). A second pass is worth its decode only
    where the model itself gave a sound-alike term a chance (``glossary.second_pass_glossary``)."""

    def __init__(self, tokenizer, glossary: Glossary):
        self.terms = glossary.terms
        self.index, self.slots = _first_tokens(tokenizer, glossary.terms)
        self.best = np.full(len(self.index), -np.inf, np.float32)
        self._term_at = {t: i for i, t in enumerate(self.terms)}
        self._begin = 0  # the last decode's sample_begin
        self._steps: list[tuple[np.ndarray, np.ndarray]] = []  # per step of the last decode: (rows' sampled tokens, margins)

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        picked = logits[:, self.index] - logits.max(axis=-1, keepdims=True)
        np.maximum(self.best, picked.max(axis=0), out=self.best)
        if tokens.shape[1] != self._begin + len(self._steps):  # not the next step: a new decode (another temperature)
            self._begin, self._steps = tokens.shape[1], []
        self._steps.append((tokens[:, self._begin :], picked))  # a view: each step's tokens are a new array, never written

    def margin(self, term: str) -> float:
        """The term's largest margin so far (-inf where no step was seen)."""
        return float(self.best[self.slots[self._term_at[term]]].max())

    def on_path(self, sampled: Sequence[int], rows: slice = slice(None)) -> Callable[[str], float]:
        """Margins (as ``margin``) taken only at the last decode's steps along ``sampled`` (its ``rows``, one window's
        in a batch, whose tokens were a prefix of it: beam search's other beams are left out); ``margin`` itself where
        that decode did not write ``sampled`` (a re-decode without this filter)."""
        best = np.full(len(self.index), -np.inf, np.float32)
        path = np.asarray(sampled, np.int64)
        for j, (tokens, margins) in enumerate(self._steps[: len(path) + 1]):
            on = (tokens[rows] == path[:j]).all(axis=1)
            picked = margins[rows]
            if not on.any():
                return self.margin
            np.maximum(best, picked[on].max(axis=0), out=best)
        if not self._steps:
            return self.margin
        return lambda term: float(best[self.slots[self._term_at[term]]].max())
