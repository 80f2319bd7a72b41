"""A glossary: the domain terms to favour (hotwords), each with a weight, and how much of the prompt they may take.

Terms come from ``--hotwords`` ("Kubernetes, ComfyUI:2") and ``--hotwords_file`` (one term a line, optionally
followed by a tab or ':' and a weight; '#' starts a comment). A weight multiplies the logit boost of that term's
tokens (1 by default; 0 keeps a term in the prompt only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

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


def coarse_key(text: str) -> str:
    """The sound key with what tiny models mis-hear most merged: every vowel run one vowel, voiced and voiceless
    consonants alike ('Padraig' and 'port rig': 'patrak', 'partrak'; 'Tchaikovsky' and 'Chai kafki')."""
    key = re.sub(r"[aeiouy]+", "a", sound_key(text)).translate(_VOICELESS)
    return "".join(c for i, c in enumerate(key) if i == 0 or c != key[i - 1])


_VOICELESS = str.maketrans("bdgvzj", "ptkfsc")
# (key, edits allowed per key letter): the coarse key matches more, so it is allowed fewer edits
KEYS = ((sound_key, 1 / 3), (coarse_key, 1 / 4))
MIN_KEY = 5  # letters of a coarse key below which a term is too short to tell from ordinary words ('Voir' and 'for')


PAIR_BITS = 1024  # letter pairs hashed to this many bits: a collision only lets more spans through to the exact distance


def _bits(text: str) -> tuple[int, np.ndarray]:
    """(letter bit mask, letter-pair bit mask as uint64 words) of a key; the filters count a key's bits a span lacks."""
    letters = 0
    for c in text:
        letters |= 1 << (ord(c) % 64)
    pairs = np.zeros(PAIR_BITS // 64, np.uint64)
    for i in range(len(text) - 1):
        bit = (ord(text[i]) * 131 + ord(text[i + 1])) % PAIR_BITS
        pairs[bit // 64] |= np.uint64(1 << (bit % 64))
    return letters, pairs


def _table(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lengths, letter masks, pair masks) of keys as arrays."""
    bits = [_bits(k) for k in keys]
    return (np.asarray([len(k) for k in keys], np.int64), np.asarray([b[0] for b in bits], np.uint64),
            np.stack([b[1] for b in bits]) if bits else np.zeros((0, PAIR_BITS // 64), np.uint64))


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # NumPy >= 2
        return np.bitwise_count(x).astype(np.int64)
    return np.unpackbits(x.view(np.uint8)).reshape(*x.shape, 64).sum(-1)


@dataclass(frozen=True)
class _TermKeys:
    """A glossary's keys of one kind (sound or coarse), with each key's edit limit, as arrays."""

    terms: tuple[str, ...]
    keys: tuple[str, ...]
    limits: np.ndarray
    table: tuple[np.ndarray, np.ndarray, np.ndarray]
    alphabet: dict[str, int]
    masks: np.ndarray  # letter_table of the keys


@lru_cache(maxsize=8)
def _term_keys(terms: tuple[str, ...]) -> list[_TermKeys]:
    """Per key kind, the keys of the terms long enough to tell from ordinary words."""
    kept = [t for t in dict.fromkeys(terms) if min(len(key(t)) for key, _ in KEYS) >= MIN_KEY and len(sound_key(t)) < 64]
    out = []
    for key, share in KEYS:
        keys = tuple(key(t) for t in kept)
        alphabet = {c: i for i, c in enumerate(sorted(set("".join(keys))))}
        out.append(_TermKeys(tuple(kept), keys, np.asarray([int(len(k) * share) for k in keys], np.int64), _table(keys), alphabet,
                             letter_table(keys, alphabet)))
    return out


def letter_table(keys: Sequence[str], alphabet: dict[str, int]) -> np.ndarray:
    """(keys, letters + 1) bit masks: bit i of [k, a] is set where key k has letter a at i; the last column (letters not
    in ``alphabet``) is empty."""
    table = np.zeros((len(keys), len(alphabet) + 1), np.uint64)
    for row, key in enumerate(keys):
        for i, c in enumerate(key):
            table[row, alphabet[c]] |= np.uint64(1 << i)
    return table


def letter_codes(spans: Sequence[str], alphabet: dict[str, int]) -> np.ndarray:
    """(spans, longest) letter numbers, len(alphabet) for a letter outside it, -1 after a span's end."""
    codes = np.full((len(spans), max((len(s) for s in spans), default=0)), -1, np.int64)
    for row, span in enumerate(spans):
        codes[row, : len(span)] = [alphabet.get(c, len(alphabet)) for c in span]
    return codes


def edit_distances(keys: Sequence[str], spans: Sequence[str]) -> np.ndarray:
    """Levenshtein distance of each key (at most 63 letters) to its span."""
    alphabet = {c: i for i, c in enumerate(sorted(set("".join(keys))))}
    return myers(letter_table(keys, alphabet), np.asarray([len(k) for k in keys], np.uint64), letter_codes(spans, alphabet))


def myers(masks: np.ndarray, lengths: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Levenshtein distances of keys (their ``letter_table`` rows and lengths) to spans (their ``letter_codes`` rows),
    pair by pair: Myers' bit-parallel algorithm, all pairs at once, one step per span letter."""
    n = len(lengths)
    one = np.uint64(1)
    full, top = (one << lengths) - one, one << (lengths - one)
    pv, mv, score = full.copy(), np.zeros(n, np.uint64), lengths.astype(np.int64)
    rows = np.arange(n)
    for t in range(codes.shape[1]):
        live = codes[:, t] >= 0  # a span shorter than t is done: its state stays
        eq = np.where(live, masks[rows, np.maximum(codes[:, t], 0)], np.uint64(0))
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | ~(xh | pv)
        mh = pv & xh
        step = (ph & top != 0).astype(np.int64) - ((ph & top == 0) & (mh & top != 0)).astype(np.int64)
        ph = (ph << one) | one
        mh = mh << one
        score = np.where(live, score + step, score)
        pv = np.where(live, (mh | ~(xv | ph)) & full, pv)
        mv = np.where(live, ph & xv & full, mv)
    return score


def plausible_terms(terms: Sequence[str], text: str, max_words: int = 3) -> tuple[str, ...]:
    """The terms that ``text`` (a first-pass transcript) may contain, spelled as they are or mis-heard, closest first:
    a run of up to ``max_words`` words whose sound key is within len(key) // 3 edits of the term's, or whose coarse key
    is within len // 4. Array bounds (length, letters and letter pairs a span lacks) leave few pairs to measure."""
    words = text.split()
    runs = ["".join(words[i : i + n]) for n in range(1, max_words + 1) for i in range(len(words) - n + 1)]
    best: dict[str, float] = {}
    for (key, _), kind in zip(KEYS, _term_keys(tuple(terms))):
        spans = sorted({key(run) for run in runs} - {""})
        if not spans or not kind.keys:
            continue
        lengths, letters, pairs = _table(spans)
        term_lengths, term_letters, term_pairs = kind.table
        # each bound on the pairs the last one left (the length bound leaves a few % of them)
        rows, cols = np.nonzero(np.abs(term_lengths[:, None] - lengths[None, :]) <= kind.limits[:, None])
        keep = _popcount(term_letters[rows] & ~letters[cols]) <= kind.limits[rows]  # each edit brings back one letter at most
        rows, cols = rows[keep], cols[keep]
        keep = _popcount(term_pairs[rows] & ~pairs[cols]).sum(-1) <= 2 * kind.limits[rows]  # and two letter pairs
        rows, cols = rows[keep], cols[keep]
        if rows.size == 0:
            continue
        distances = myers(kind.masks[rows], term_lengths[rows].astype(np.uint64), letter_codes(spans, kind.alphabet)[cols])
        for i, distance in zip(rows.tolist(), distances.tolist()):
            if distance <= kind.limits[i]:
                term = kind.terms[i]
                best[term] = min(best.get(term, 2.0), distance / len(kind.keys[i]))
    order = {t: i for i, t in enumerate(terms)}
    return tuple(sorted(best, key=lambda t: (best[t], order[t])))


# the margin (logits) by which the first pass must have considered one of the chosen terms' first tokens; chosen on
# the dev split and real English (bench/RESULTS.md, issue 25, 2026-12-03)
MIN_MARGIN = -8.0


def second_pass_glossary(glossary: Glossary, first_pass_text: str, prompt_budget: int = 64, max_terms: int = 3,
                         evidence: Callable[[str], float] | None = None, min_margin: float = MIN_MARGIN) -> Glossary | None:
    """The glossary narrowed to the (at most ``max_terms``) terms a first pass's text plausibly contains, closest
    first, all of them in the prompt (within ``prompt_budget`` tokens); None when it contains none or already spells
    every one (the first pass stands), or when ``evidence`` (a term's margin in the first pass:
    ``hotwords.TermEvidence.on_path``) is below ``min_margin`` for every one it does not spell yet (only those can
    make a second pass worth keeping: ``second_pass_holds``): ordinary words sound like some
    term of a long glossary, and the model's own doubt tells a mis-heard term from them. A prompt of terms that are
    said helps tiny models spell them; one of terms that are not makes them hallucinate (bench/ADAPT.md)."""
    chosen = plausible_terms(glossary.terms, first_pass_text)[:max_terms]
    unspelled = set(chosen) - seen_terms(chosen, first_pass_text)
    if not unspelled:
        return None
    if evidence is not None and max(evidence(t) for t in unspelled) < min_margin:  # a spelled term is never newly spelled
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


def word_count(text: str) -> int:
    """Words as ``second_pass_holds`` counts them (runs of letters and digits)."""
    return len(_words(text).split())


def second_pass_max_words(first_text: str) -> int:
    """Most words a second pass's text may have to be kept (``second_pass_holds``): a text that has more already is
    dropped whatever follows, so its decode can end there."""
    return word_count(first_text) + 2


def second_pass_holds(first_text: str, second_text: str, narrowed: Glossary) -> bool:
    """Is a second pass's text worth keeping over the first's? It must spell a term the first did not, and have about
    as many words (a prompt of terms makes tiny models write lists of them, or stop early): at most 2 words more, and
    no fewer than the first's less 2 per term it spells (a mis-heard term may have taken several words) and 1."""
    if not seen_terms(narrowed.terms, second_text) - seen_terms(narrowed.terms, first_text):
        return False
    second = f" {_words(second_text)} "
    spelled = sum(second.count(f" {_words(t)} ") for t in narrowed.terms)
    n_first, n_second = word_count(first_text), len(second.split())
    return n_first - 2 * spelled - 1 <= n_second <= second_pass_max_words(first_text)


def second_pass_sample_len(first_pass_tokens: int, narrowed_tokens: int) -> int:
    """Most tokens a second pass may sample: one that ends later spells more than its terms beyond the first pass, and
    so has more words than ``second_pass_holds`` keeps; a prompt of terms sometimes makes tiny models write a term over
    and over, to the window's 224 tokens (then that decode cost ten first passes)."""
    return first_pass_tokens + narrowed_tokens + 16
