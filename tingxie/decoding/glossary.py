"""A glossary: the domain terms to favour (hotwords), each with a weight, and how much of the prompt they may take.

Terms come from ``--hotwords`` ("Kubernetes, ComfyUI:2") and ``--hotwords_file`` (one term a line, optionally
followed by a tab or ':' and a weight; '#' starts a comment). A weight multiplies the logit boost of that term's
tokens (1 by default; 0 keeps a term in the prompt only).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import OptionError


@dataclass(frozen=True)
class Glossary:
    """Terms in the order given, their boost weights, and the prompt budget in tokens (0: no terms in the prompt)."""

    terms: tuple[str, ...]
    weights: tuple[float, ...]
    prompt_budget: int = 0

    def __len__(self) -> int:
        return len(self.terms)

    def __str__(self) -> str:
        return ", ".join(t if w == 1 else f"{t}:{w:g}" for t, w in zip(self.terms, self.weights))

    def weight_of(self) -> dict[str, float]:
        return dict(zip(self.terms, self.weights))


def _term_and_weight(item: str, separators: str, where: str) -> tuple[str, float] | None:
    """'Kubernetes:2' -> ('Kubernetes', 2.0); a separator followed by something that is no number stays in the term."""
    text = item.strip()
    if not text:
        return None
    for sep in separators:
        head, found, tail = text.rpartition(sep)
        if found and head.strip():
            try:
                weight = float(tail)
            except ValueError:
                continue
            if weight < 0 or weight != weight:
                raise OptionError(f"{where}: the weight of {head.strip()!r} must be a number >= 0, got {tail.strip()!r}")
            return head.strip(), weight
    return text, 1.0


def parse_terms(hotwords: str | Sequence[str] | None) -> list[tuple[str, float]]:
    """'Kubernetes, ComfyUI:2' -> [('Kubernetes', 1.0), ('ComfyUI', 2.0)]: comma-separated, optional ':weight'."""
    if not hotwords:
        return []
    items = hotwords.split(",") if isinstance(hotwords, str) else hotwords
    return [tw for tw in (_term_and_weight(i, ":", "hotwords") for i in items) if tw is not None]


@lru_cache(maxsize=8)
def _read_file(path: str, mtime: float) -> tuple[tuple[str, float], ...]:
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise OptionError(f"cannot read the hotwords file {path}: {e}") from e
    out = []
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith("#"):  # a comment line ('#' inside a term, as in C#, stays)
            continue
        tw = _term_and_weight(line, "\t:", f"{path}:{number}")
        if tw is not None:
            out.append(tw)
    return tuple(out)


def read_terms_file(path: str | os.PathLike) -> list[tuple[str, float]]:
    """The (term, weight) lines of a hotwords file; OptionError (one line) if it is missing or unreadable."""
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise OptionError(f"hotwords file not found: {path}")
    return list(_read_file(str(resolved.resolve()), resolved.stat().st_mtime))


def make_glossary(hotwords: str | Sequence[str] | Glossary | None, hotwords_file: str | None, prompt_budget: int) -> Glossary | None:
    """The glossary of the hotwords and the file's terms (a term given twice keeps its last weight); None when empty."""
    if isinstance(hotwords, Glossary):  # options copied with dataclasses.replace: the file was read already
        pairs: Iterable[tuple[str, float]] = zip(hotwords.terms, hotwords.weights)
    else:
        pairs = [*parse_terms(hotwords), *(read_terms_file(hotwords_file) if hotwords_file else [])]
    merged = dict(pairs)
    if not merged:
        return None
    if prompt_budget < 0:
        raise OptionError(f"hotword_prompt_budget must be >= 0, got {prompt_budget}")
    return Glossary(tuple(merged), tuple(merged.values()), prompt_budget)


LIMIT_DIV = 3
_SOUNDS = (("ph", "f"), ("ck", "k"), ("qu", "kw"), ("q", "k"), ("c", "k"), ("x", "ks"), ("z", "s"), ("y", "i"), ("w", "u"),
           ("ee", "i"), ("ea", "i"), ("oo", "u"), ("ou", "u"), ("dg", "j"), ("gh", "g"), ("h", ""))


def sound_key(text: str) -> str:
    """A rough spelling-to-sound key: lower-case letters and digits, a few English spellings of one sound merged,
    doubled letters once ('Kubernetes' and 'Cooper Netties': 'kubernets', 'kupernetis')."""
    key = "".join(c for c in text.lower() if c.isalnum())
    for spelling, sound in _SOUNDS:
        key = key.replace(spelling, sound)
    return "".join(c for i, c in enumerate(key) if i == 0 or c != key[i - 1])


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of two short strings; anything above ``limit`` is returned as limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _term_keys(terms: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """(term, sound key, edit limit) of the terms whose key is long enough to tell from ordinary words."""
    out = []
    for term in terms:
        key = sound_key(term)
        if len(key) >= 4:
            out.append((term, key, len(key) // LIMIT_DIV))
    return out


_term_keys_cached = lru_cache(maxsize=8)(_term_keys)


def plausible_terms(terms: Sequence[str], text: str, max_words: int = 3) -> tuple[str, ...]:
    """The terms that ``text`` (a first-pass transcript) may contain, spelled as they are or mis-heard, closest first:
    a run of up to ``max_words`` words whose sound key is within len(key) // 3 edits of the term's."""
    words = text.split()
    spans = {sound_key("".join(words[i : i + n])) for n in range(1, max_words + 1) for i in range(len(words) - n + 1)}
    spans.discard("")
    by_length: dict[int, list[str]] = {}
    for span in spans:
        by_length.setdefault(len(span), []).append(span)
    found: list[tuple[float, int, str]] = []
    for index, (term, key, limit) in enumerate(_term_keys_cached(tuple(terms))):
        letters = set(key)
        best = limit + 1
        for length in range(len(key) - limit, len(key) + limit + 1):  # only spans of a length within reach
            for span in by_length.get(length, ()):
                # cheap bound first: letters of the key missing from the span each cost an edit
                if len(letters - set(span)) <= limit:
                    best = min(best, edit_distance(span, key, limit))
        if best <= limit:
            found.append((best / len(key), index, term))
    return tuple(term for _, _, term in sorted(found))


def second_pass_glossary(glossary: Glossary, first_pass_text: str, prompt_budget: int = 64, max_terms: int = 3) -> Glossary | None:
    """The glossary narrowed to the (at most ``max_terms``) terms a first pass's text plausibly contains, closest
    first, all of them in the prompt (within ``prompt_budget`` tokens); None when it contains none or already spells
    every one (the first pass stands). A prompt of terms that are said helps tiny models spell them; one of terms that
    are not makes them hallucinate (bench/ADAPT.md)."""
    chosen = plausible_terms(glossary.terms, first_pass_text)[:max_terms]
    if not chosen or not set(chosen) - seen_terms(chosen, first_pass_text):
        return None
    weight = glossary.weight_of()
    return Glossary(chosen, tuple(weight[t] for t in chosen), prompt_budget)


def seen_terms(terms: Sequence[str], text: str) -> frozenset[str]:
    """The terms that occur in ``text`` (case-insensitively, as whole words)."""
    if not text:
        return frozenset()
    padded = f" {_words(text)} "
    return frozenset(t for t in terms if f" {_words(t)} " in padded)


def _words(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def second_pass_holds(first_text: str, second_text: str, narrowed: Glossary) -> bool:
    """Is a second pass's text worth keeping over the first's? It must spell a term the first did not, and have about
    as many words (a prompt of terms makes tiny models write lists of them, or stop early): at most 2 words more, and
    no fewer than the first's less 2 per term it spells (a mis-heard term may have taken several words) and 1."""
    if not seen_terms(narrowed.terms, second_text) - seen_terms(narrowed.terms, first_text):
        return False
    second = f" {_words(second_text)} "
    spelled = sum(second.count(f" {_words(t)} ") for t in narrowed.terms)
    n_first, n_second = len(_words(first_text).split()), len(second.split())
    return n_first - 2 * spelled - 1 <= n_second <= n_first + 2
