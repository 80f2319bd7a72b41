"""Repetition loops in a window's text: a phrase said again and again ("Okay. Okay. Okay. ...").

gzip's compression ratio (the reference's test) misses short loops: a window of 30 "Okay."s compresses only ~2.2x
under the 2.4 threshold when a few other words surround them. Here words (lower-cased, punctuation stripped) are
scanned for an n-gram repeated back to back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

MAX_PHRASE_WORDS = 12  # longer phrases said three times in a row are not what tiny models loop on
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*", re.UNICODE)


@dataclass(frozen=True)
class Repeat:
    """``count`` back-to-back copies of a phrase of ``size`` words, the first starting at word ``start``."""

    start: int
    size: int
    count: int

    @property
    def words(self) -> int:
        return self.size * self.count


def words_of(text: str) -> list[str]:
    """The text's words, lower-cased, punctuation dropped; each character of Chinese/Japanese text counts as a word."""
    found = []
    for word in _WORD.findall(text.lower()):
        found.extend(word if _is_character_script(word) else [word])
    return found


def _is_character_script(word: str) -> bool:
    return any("\u3040" <= c <= "\u30ff" or "\u3400" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af" for c in word)


def longest_repeat(words: Sequence[str], max_size: int = MAX_PHRASE_WORDS) -> Repeat | None:
    """The run of back-to-back copies of one phrase that covers the most words (ties: the earliest); None when no
    phrase is directly followed by itself."""
    best: Repeat | None = None
    n = len(words)
    for size in range(1, min(max_size, n // 2) + 1):
        start = 0
        while start + 2 * size <= n:
            count = 1
            while start + (count + 1) * size <= n and words[start + count * size : start + (count + 1) * size] == words[start : start + size]:
                count += 1
            if count > 1:
                found = Repeat(start, size, count)
                if best is None or found.words > best.words or (found.words == best.words and found.start < best.start):
                    best = found
                start += (count - 1) * size + 1
            else:
                start += 1
    return best


def is_loop(repeat: Repeat | None) -> bool:
    """A phrase three or more times in a row covering at least six words, or one word five or more times: what a
    decoder stuck in a loop writes, and rarely a speaker ("no, no, no" and "very very" stay)."""
    if repeat is None:
        return False
    if repeat.size == 1:
        return repeat.count >= 5
    return repeat.count >= 3 and repeat.words >= 6


def loops(text: str) -> bool:
    """Whether the text repeats a phrase as a decoding loop does (``is_loop``). A loop says each of its words at least
    three times: a text with no such word is answered by counting (a tenth of the phrase scan's time; a decode asks
    it every step)."""
    words = words_of(text)
    return _some_word_thrice(words) and is_loop(longest_repeat(words))


def surely_loops(text: str, *, final: bool = False) -> bool:
    """Whether ``loops`` holds for this text and for every text that begins with it (a decode's text so far, whatever
    it writes next; ``final``: the text is complete). A repeat found in a prefix of the words is found again, as long
    or longer, in the whole (``longest_repeat``'s scan is the same up to the prefix's end), and no repeat that
    ``is_loop`` refuses covers more than 2 * MAX_PHRASE_WORDS words: one longer than that makes every continuation
    loop. The last word may still grow: it is left out unless final (``_words_before_last``)."""
    words = words_of(text) if final else _words_before_last(text)
    return len(words) > 2 * MAX_PHRASE_WORDS and _periodic_tail(words) and _covers(longest_repeat(words)) > 2 * MAX_PHRASE_WORDS


def _words_before_last(text: str) -> list[str]:
    """``words_of`` the text less its last word, which the next token may extend (or, written in Chinese or Japanese
    characters, split into characters, which it only adds to: those stay)."""
    lowered = text.lower()
    last = None
    for last in _WORD.finditer(lowered):
        pass
    if last is None:
        return []
    return words_of(lowered[: last.start()]) + (list(last.group()) if _is_character_script(last.group()) else [])


def _periodic_tail(words: Sequence[str]) -> bool:
    """A cheap gate for ``surely_loops`` (asked during a decode): its last 2 * MAX_PHRASE_WORDS + 1 words
    repeat with a period of at most MAX_PHRASE_WORDS (a loop still going on)."""
    span = 2 * MAX_PHRASE_WORDS + 1
    return len(words) >= span and any(words[-span:-size] == words[-span + size :] for size in range(1, MAX_PHRASE_WORDS + 1))


def _covers(repeat: Repeat | None) -> int:
    return 0 if repeat is None else repeat.words


def _some_word_thrice(words: Sequence[str]) -> bool:
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
        if counts[word] >= 3:
            return True
    return False


def kept_words(text: str) -> int | None:
    """How many of the text's words to keep to drop a loop's repeated tail (all before it and the phrase once);
    None when it does not loop."""
    repeat = longest_repeat(words_of(text))
    return repeat.start + repeat.size if is_loop(repeat) else None


def trim_tokens(tokens: Sequence[int], keep: int, decode_text) -> list[int]:
    """The shortest prefix of ``tokens`` whose text (``decode_text(prefix)``) has ``keep`` words, or all of them."""
    for end in range(1, len(tokens) + 1):
        if len(words_of(decode_text(list(tokens[:end])))) >= keep:
            # tokens that continue the last kept word (no space before them) belong to it
            while end < len(tokens) and len(words_of(decode_text(list(tokens[: end + 1])))) == keep and \
                    not decode_text([tokens[end]]).startswith((" ", "\n")) and decode_text([tokens[end]]).strip():
                end += 1
            return list(tokens[:end])
    return list(tokens)


def drop_looped_tail(result: Any, tokenizer: Any) -> Any:
    """A window's ``DecodingResult`` whose text still loops after the last temperature, with the loop's repeated tail
    dropped (its tokens, text and compression ratio); any other result as it is."""
    keep = kept_words(result.text)
    if keep is None:
        return result
    from .window import compression_ratio

    text_of = lambda tokens: tokenizer.decode([t for t in tokens if t < tokenizer.eot])  # noqa: E731
    tokens = trim_tokens(result.tokens, keep, text_of)
    text = text_of(tokens)
    return replace(result, tokens=tokens, text=text, compression_ratio=compression_ratio(text))
