"""Hotwords: bias decoding towards given spellings (names, jargon) by prompt and by logit boosting.

Each hotword's spellings (" Kubernetes" after a space, "Kubernetes" at the start of the text, and the
first letter capitalised) are tokenized into a trie. At every step a beam's sampled tokens are matched
from their end against the trie: every token that would continue a hotword already begun gets
``boost`` added to its logit, and the first token of every hotword gets half of it wherever a word can
start (a full boost there made tiny.en insert hotwords into unrelated speech). A completed hotword
boosts nothing more, so the bias is local to the words themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

from .filters import LogitFilter


def parse_hotwords(hotwords: str | Sequence[str] | None) -> tuple[str, ...]:
    """'Kubernetes, ComfyUI' -> ('Kubernetes', 'ComfyUI'): comma-separated, stripped, duplicates dropped."""
    if not hotwords:
        return ()
    items = hotwords.split(",") if isinstance(hotwords, str) else hotwords
    return tuple(dict.fromkeys(w.strip() for w in items if w.strip()))


def hotword_prompt_tokens(tokenizer, hotwords: str | Sequence[str], prompt: Sequence[int], limit: int) -> list[int]:
    """The hotwords as text before the previous-text prompt (as faster-whisper does), ``limit`` tokens at most.

    The hotwords come first and are kept whole where they fit; the previous text is cut from its start.
    """
    words = parse_hotwords(hotwords)
    hot = tokenizer.encode(" " + ", ".join(words))[:limit] if words else []
    room = limit - len(hot)
    return hot + (list(prompt)[-room:] if room > 0 and prompt else [])


def spellings(word: str) -> list[str]:
    """The word as given and with its first letter capitalised (it may begin a sentence)."""
    variants = [word, word[:1].upper() + word[1:]]
    return list(dict.fromkeys(variants))


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    terminal: bool = False


class TokenTrie:
    """A trie of token sequences: which tokens continue a sequence already begun."""

    def __init__(self, sequences: Iterable[Sequence[int]] = ()):
        self.root = _Node()
        self.max_len = 0
        for seq in sequences:
            self.add(seq)

    def add(self, sequence: Sequence[int]) -> None:
        node = self.root
        for token in sequence:
            node = node.children.setdefault(int(token), _Node())
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
    """Add ``boost`` to the logits of tokens that continue a hotword, ``boost / 2`` to those that begin one.

    ``word_trie`` holds the spellings after a space (matched anywhere); ``start_trie`` those without
    (matched only where the text starts: at ``sample_begin`` or right after a timestamp). Tokens at or
    above ``special_begin`` (end of text, timestamps) end any match.
    """

    def __init__(self, word_trie: TokenTrie, start_trie: TokenTrie, boost: float, sample_begin: int, special_begin: int):
        self.word_trie, self.start_trie = word_trie, start_trie
        self.boost = boost
        self.start_boost = boost / 2  # a word start is weaker evidence than a hotword already begun
        self.sample_begin = sample_begin
        self.special_begin = special_begin
        self.max_len = max(word_trie.max_len, start_trie.max_len)
        self.word_starts = word_trie.first_tokens()
        self.text_starts = sorted(set(self.word_starts) | set(start_trie.first_tokens()))

    def bonuses(self, sampled: Sequence[int]) -> dict[int, float]:
        """Token -> bonus after ``sampled`` (this row's tokens since sample_begin)."""
        at_start = not sampled or sampled[-1] >= self.special_begin
        out = dict.fromkeys(self.text_starts if at_start else self.word_starts, self.start_boost)
        for token in self.continuations(sampled):
            out[token] = self.boost
        return out

    def continuations(self, sampled: Sequence[int]) -> set[int]:
        """Tokens that continue a hotword begun at the end of ``sampled``."""
        out: set[int] = set()
        for k in range(1, min(self.max_len, len(sampled)) + 1):
            suffix = sampled[-k:]
            if suffix[0] >= self.special_begin:
                break  # a hotword never spans a timestamp or the end of text
            node = self.word_trie.find(suffix)
            if node is not None:
                out.update(node.children)
            starts_text = len(sampled) == k or sampled[-k - 1] >= self.special_begin
            if starts_text:
                node = self.start_trie.find(suffix)
                if node is not None:
                    out.update(node.children)
        return out

    def apply(self, logits: Tensor, tokens: Tensor) -> None:
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        for row, sampled in enumerate(tokens[:, self.sample_begin :].tolist()):
            bonuses = self.bonuses(sampled)
            rows.extend([row] * len(bonuses))
            cols.extend(bonuses)
            values.extend(bonuses.values())
        if rows and isinstance(logits, np.ndarray):  # ONNX Runtime path (NumPy 2 arrays have .device too); pairs unique
            logits[rows, cols] += np.asarray(values, dtype=logits.dtype)
        elif rows:
            import torch

            index = (torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device))
            logits[index] += torch.tensor(values, device=logits.device, dtype=logits.dtype)


@lru_cache(maxsize=32)
def hotword_tries(tokenizer, hotwords: tuple[str, ...]) -> tuple[TokenTrie, TokenTrie]:
    """(after-a-space trie, start-of-text trie) of the hotwords' spellings; cached per tokenizer and list."""
    variants = [v for w in hotwords for v in spellings(w)]
    word = TokenTrie(tokenizer.encode(" " + v) for v in variants)
    start = TokenTrie(tokenizer.encode(v) for v in variants)
    return word, start


def hotword_filter(tokenizer, hotwords: str | Sequence[str], boost: float, sample_begin: int) -> HotwordBoost | None:
    """The boosting filter for these hotwords, or None when there is nothing to boost."""
    words = parse_hotwords(hotwords)
    if not words or boost == 0:
        return None
    word, start = hotword_tries(tokenizer, words)
    return HotwordBoost(word, start, boost, sample_begin, tokenizer.eot)
