"""Build a small word n-gram language model in ARPA format (interpolated Kneser-Ney) from sentences.

kenlm's pip package can read models but not build them (its ``lmplz`` is not included), so this is
enough to make a domain LM for ``tingxie transcribe --lm``:

    python scripts/make_lm.py sentences.txt domain.arpa --order 3

One sentence per line; words are normalised as the decoder normalises them (lower-case, punctuation
stripped: ``tingxie.decoding.lm.normalize_sentence``). Lower orders use continuation counts, each
order one absolute discount D = n1 / (n1 + 2 n2), and the unigrams are interpolated with a uniform
distribution over the vocabulary (so ``<unk>`` has a probability). For interpolated Kneser-Ney the
ARPA backoff weight of a context is exactly its interpolation weight gamma.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
Gram = tuple[str, ...]


def _normalize(line: str) -> list[str]:
    from tingxie.decoding.lm import normalize_sentence

    return normalize_sentence(line)


def count_ngrams(sentences: Iterable[list[str]], order: int) -> list[Counter[Gram]]:
    """Raw counts of every n-gram, n = 1..order, in sentences padded with <s> and </s>."""
    counts: list[Counter[Gram]] = [Counter() for _ in range(order)]
    for words in sentences:
        padded = [BOS] + words + [EOS]
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                counts[n - 1][tuple(padded[i : i + n])] += 1
    return counts


def kneser_ney_counts(raw: list[Counter[Gram]]) -> list[Counter[Gram]]:
    """Highest order raw; lower orders the number of distinct left extensions (raw where the gram starts with <s>)."""
    order = len(raw)
    adjusted: list[Counter[Gram]] = [Counter() for _ in range(order)]
    adjusted[-1] = Counter(raw[-1])
    for n in range(order - 1, 0, -1):
        for gram in raw[n]:  # (n+1)-grams: each distinct one adds a left extension to its suffix
            adjusted[n - 1][gram[1:]] += 1
        for gram, c in raw[n - 1].items():
            if gram[0] == BOS:
                adjusted[n - 1][gram] = c
    return adjusted


def discount(counts: Counter[Gram]) -> float:
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    if n1 == 0 or n2 == 0:
        return 0.5  # too little data to estimate; a middling discount
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


class KneserNey:
    """Interpolated Kneser-Ney probabilities from the counts of one corpus."""

    def __init__(self, sentences: Iterable[list[str]], order: int = 3):
        if order < 1:
            raise ValueError("order must be >= 1")
        self.order = order
        self.counts = kneser_ney_counts(count_ngrams(sentences, order))
        self.discounts = [discount(c) for c in self.counts]
        self.vocab = sorted({g[0] for g in self.counts[0]} - {BOS} | {EOS, UNK})
        self.context_total: list[dict[Gram, int]] = []
        self.context_types: list[dict[Gram, int]] = []
        for counts in self.counts:
            total: dict[Gram, int] = defaultdict(int)
            types: dict[Gram, int] = defaultdict(int)
            for gram, c in counts.items():
                if gram[-1] == BOS:
                    continue  # <s> is never predicted
                total[gram[:-1]] += c
                types[gram[:-1]] += 1
            self.context_total.append(dict(total))
            self.context_types.append(dict(types))

    def gamma(self, context: Gram) -> float:
        """The interpolation weight of the lower order after ``context`` (1 where the context was never seen)."""
        n = len(context)
        total = self.context_total[n].get(context)
        if not total:
            return 1.0
        return self.discounts[n] * self.context_types[n][context] / total

    def prob(self, word: str, context: Gram = ()) -> float:
        """P(word | context) for a context of at most order - 1 words."""
        context = context[-(self.order - 1) :] if self.order > 1 else ()
        n = len(context)
        if n == 0:
            lower = 1.0 / len(self.vocab)
        else:
            lower = self.prob(word, context[1:])
        total = self.context_total[n].get(context)
        if not total:
            return lower
        c = self.counts[n].get(context + (word,), 0)
        return max(c - self.discounts[n], 0.0) / total + self.gamma(context) * lower

    def arpa_entries(self) -> list[list[tuple[float, Gram, float | None]]]:
        """Per order, (log10 p, gram, log10 backoff or None) sorted by gram."""
        out = []
        for n in range(1, self.order + 1):
            grams = sorted(g for g in self.counts[n - 1] if g[-1] != BOS)
            if n == 1:
                grams = sorted(set(grams) | {(w,) for w in self.vocab})
            rows = []
            for gram in grams:
                logp = math.log10(self.prob(gram[-1], gram[:-1]))
                bow = math.log10(self.gamma(gram)) if n < self.order and gram in self.context_total[n] else None
                rows.append((logp, gram, bow))
            if n == 1:  # <s> starts every sentence: never predicted, but a context with a backoff weight
                rows.insert(0, (-99.0, (BOS,), math.log10(self.gamma((BOS,))) if self.order > 1 else None))
            out.append(rows)
        return out

    def write_arpa(self, path: Path) -> None:
        entries = self.arpa_entries()
        lines = ["", "\\data\\"] + [f"ngram {n}={len(rows)}" for n, rows in enumerate(entries, 1)]
        for n, rows in enumerate(entries, 1):
            lines += ["", f"\\{n}-grams:"]
            for logp, gram, bow in rows:
                lines.append(f"{logp:.6f}\t{' '.join(gram)}" + (f"\t{bow:.6f}" if bow is not None else ""))
        lines += ["", "\\end\\", ""]
        path.write_text("\n".join(lines), encoding="utf-8")


def build(text_path: Path, arpa_path: Path, order: int = 3) -> KneserNey:
    sentences = [words for words in (_normalize(line) for line in text_path.read_text(encoding="utf-8").splitlines()) if words]
    if not sentences:
        raise SystemExit(f"{text_path}: no words to build a language model from")
    model = KneserNey(sentences, order)
    model.write_arpa(arpa_path)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build an ARPA n-gram LM (interpolated Kneser-Ney) from a text file, one sentence per line.")
    parser.add_argument("text", type=Path, help="sentences, one per line")
    parser.add_argument("arpa", type=Path, help="the ARPA file to write (kenlm reads it; kenlm's build_binary can compact it)")
    parser.add_argument("--order", type=int, default=3, help="n-gram order (default: 3)")
    args = parser.parse_args(argv)
    model = build(args.text, args.arpa, args.order)
    print(f"{args.arpa}: order {model.order}, {len(model.vocab)} words, "
          + ", ".join(f"{len(c)} {n}-grams" for n, c in enumerate(model.counts, 1)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
