"""Spelled-out English numbers to digits, as Whisper's English normaliser writes them for scoring.

"twenty five" -> "25", "one hundred and two" -> "102", "nineteen fifties" -> "1950s",
"thirty first" -> "31st", "five percent" -> "5%", "two dollars and seventy cents" -> "$2.70",
"double oh seven" -> "007", "minus 500" -> "-500", "three and a half million" -> "3500000".
Successive single digits read as a code ("nine one one" -> "911"); a lone "one" stays a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction

_ONES_NAMES = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
               "sixteen seventeen eighteen nineteen").split()
ONES = {name: i for i, name in enumerate(_ONES_NAMES, start=1)}
ZEROS = {"o", "oh", "zero"}
TENS = {name: 10 * i for i, name in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
MULTIPLIERS = {
    name: 10 ** (3 * i) if i else 100
    for i, name in enumerate("hundred thousand million billion trillion quadrillion quintillion sextillion "
                             "septillion octillion nonillion decillion".split())
}


def _ordinal(name: str) -> str:
    irregular = {"one": "first", "two": "second", "three": "third", "five": "fifth", "twelve": "twelfth"}
    return irregular.get(name) or name + ("h" if name.endswith("t") else "th")


# Plurals and ordinals: a number word with a suffix ends the number ("sixties", "thirty first").
ONES_SUFFIXED = {("sixes" if n == "six" else n + "s"): (v, "s") for n, v in ONES.items()}
ONES_SUFFIXED.update({"zeroth": (0, "th")})
ONES_SUFFIXED.update({_ordinal(n): (v, {1: "st", 2: "nd", 3: "rd"}.get(v, "th")) for n, v in ONES.items()})
TENS_SUFFIXED = {n[:-1] + "ies": (v, "s") for n, v in TENS.items()}
TENS_SUFFIXED.update({n[:-1] + "ieth": (v, "th") for n, v in TENS.items()})
MULTIPLIERS_SUFFIXED = {n + "s": (v, "s") for n, v in MULTIPLIERS.items()}
MULTIPLIERS_SUFFIXED.update({n + "th": (v, "th") for n, v in MULTIPLIERS.items()})

SIGNS = {"minus": "-", "negative": "-", "plus": "+", "positive": "+"}  # before a number
CURRENCIES = {"pound": "£", "pounds": "£", "euro": "€", "euros": "€", "dollar": "$", "dollars": "$", "cent": "¢", "cents": "¢"}
PREFIX_SYMBOLS = set(SIGNS.values()) | set(CURRENCIES.values())
PERCENT = {"percent": "%"}
SPECIALS = {"and", "double", "triple", "point", "per"}
DECIMAL_WORDS = set(ONES) | set(TENS) | ZEROS
NUMBER_WORDS = (ZEROS | set(ONES) | set(ONES_SUFFIXED) | set(TENS) | set(TENS_SUFFIXED) | set(MULTIPLIERS)
                | set(MULTIPLIERS_SUFFIXED) | set(SIGNS) | set(CURRENCIES) | set(PERCENT) | SPECIALS)

_DIGITS = re.compile(r"^\d+(\.\d+)?$")

Value = int | str | None  # an int while arithmetic applies; a str once digits are concatenated ("9" "1" "1")


def _fraction(text: object) -> Fraction | None:
    try:
        return Fraction(str(text))
    except ValueError:
        return None


class _Reader:
    """Reads words left to right, holding the number being spelled out until a word ends it."""

    def __init__(self) -> None:
        self.value: Value = None
        self.prefix: str | None = None

    def emit(self, item: object) -> str:
        text = f"{self.prefix or ''}{item}"
        self.value, self.prefix = None, None
        return text

    def flush(self) -> Iterator[str]:
        if self.value is not None:
            yield self.emit(self.value)

    def add_ones(self, n: int, prev: str | None) -> Value:
        """The value after a word for 1..19 that follows ``prev``."""
        value = self.value
        if value is None:
            return n
        if isinstance(value, str) or prev in ONES:  # read as a code: "nine one one", "five twenty four"
            if prev in TENS and n < 10:  # "...twenty five": the tens' zero becomes the digit
                return f"{str(value)[:-1]}{n}"
            return f"{value}{n}"
        if value % (10 if n < 10 else 100) == 0:  # "forty three", "two hundred eleven"
            return value + n
        return f"{value}{n}"  # "nineteen five" -> "195"

    def add_tens(self, n: int) -> Value:
        value = self.value
        if value is None:
            return n
        if isinstance(value, str) or value % 100 != 0:  # "nineteen ninety" -> "1990"
            return f"{value}{n}"
        return value + n  # "two hundred twenty" -> 220

    def scale(self, multiplier: int) -> tuple[Value, bool]:
        """The value times a multiplier word; False when it cannot be scaled (a code such as "007")."""
        if self.value is None:
            return multiplier, True
        if isinstance(self.value, str) or self.value == 0:
            f = _fraction(self.value)
            if f is not None and (f * multiplier).denominator == 1:
                return (f * multiplier).numerator, True
            return self.value, False
        # only the part below a thousand is multiplied: "two thousand five hundred"
        return self.value // 1000 * 1000 + self.value % 1000 * multiplier, True

    def read(self, words: list[str]) -> Iterator[str]:
        padded = [None, *words, None]
        skip = False
        for prev, word, nxt in zip(padded, padded[1:], padded[2:]):
            if skip:
                skip = False
                continue
            assert word is not None
            next_numeric = nxt is not None and _DIGITS.match(nxt) is not None
            next_number = nxt in NUMBER_WORDS or next_numeric
            signed = word[0] in PREFIX_SYMBOLS
            bare = word[1:] if signed else word
            if _DIGITS.match(bare):
                if self.value is not None:
                    if isinstance(self.value, str) and self.value.endswith("."):  # decimals, IP addresses
                        self.value = f"{self.value}{word}"
                        continue
                    yield self.emit(self.value)
                self.prefix = word[0] if signed else self.prefix
                f = _fraction(bare)
                self.value = f.numerator if f is not None and f.denominator == 1 else bare
            elif word not in NUMBER_WORDS:
                yield from self.flush()
                yield self.emit(word)
            elif word in ZEROS:
                self.value = f"{self.value or ''}0"
            elif word in ONES:
                self.value = self.add_ones(ONES[word], prev)
            elif word in TENS:
                self.value = self.add_tens(TENS[word])
            elif word in ONES_SUFFIXED or word in TENS_SUFFIXED:  # "thirty first", "nineteen fifties": the number ends
                n, suffix = ONES_SUFFIXED.get(word) or TENS_SUFFIXED[word]
                self.value = self.add_ones(n, prev) if word in ONES_SUFFIXED else self.add_tens(n)
                yield self.emit(f"{self.value}{suffix}")
            elif word in MULTIPLIERS:
                scaled, ok = self.scale(MULTIPLIERS[word])
                if not ok:
                    yield self.emit(self.value)
                    scaled = MULTIPLIERS[word]
                self.value = scaled
            elif word in MULTIPLIERS_SUFFIXED:
                multiplier, suffix = MULTIPLIERS_SUFFIXED[word]
                scaled, ok = self.scale(multiplier)
                if not ok:
                    yield self.emit(self.value)
                    scaled = multiplier
                yield self.emit(f"{scaled}{suffix}")
            elif word in SIGNS:
                yield from self.flush()
                if next_number:
                    self.prefix = SIGNS[word]
                else:
                    yield self.emit(word)
            elif word in CURRENCIES:
                if self.value is not None:  # "20 dollars" -> "$20"
                    self.prefix = CURRENCIES[word]
                    yield self.emit(self.value)
                else:
                    yield self.emit(word)
            elif word == "percent" or word == "per":
                if self.value is None:
                    yield self.emit(word)
                elif word == "percent":
                    yield self.emit(f"{self.value}%")
                elif nxt == "cent":  # "per cent"
                    yield self.emit(f"{self.value}%")
                    skip = True
                else:
                    yield self.emit(self.value)
                    yield self.emit(word)
            elif not next_number:  # and, double, triple, point: numeric only before a number
                yield from self.flush()
                yield self.emit(word)
            elif word == "and":
                if prev not in MULTIPLIERS:  # "hundred and two" reads as one number; other "and"s are words
                    yield from self.flush()
                    yield self.emit(word)
            elif word in ("double", "triple"):
                if nxt in ONES or nxt in ZEROS:
                    self.value = f"{self.value or ''}{str(ONES.get(nxt, 0)) * (2 if word == 'double' else 3)}"
                    skip = True
                else:
                    yield from self.flush()
                    yield self.emit(word)
            elif word == "point" and (nxt in DECIMAL_WORDS or next_numeric):
                self.value = f"{self.value or ''}."
        yield from self.flush()


def _half(text: str) -> str:
    """"<number> and a half" -> "<number> point five" when the number ends in a digit word or multiplier."""
    parts = re.split(r"\band\s+a\s+half\b", text)
    out = []
    for i, part in enumerate(parts):
        if not part.strip():
            continue
        out.append(part)
        if i < len(parts) - 1:
            last = part.rsplit(maxsplit=2)[-1]
            out.append("point five" if last in DECIMAL_WORDS or last in MULTIPLIERS else "and a half")
    return " ".join(out)


def _cents(match: re.Match) -> str:
    return f"{match.group(1)}{match.group(2)}.{int(match.group(3)):02d}"


def spoken_numbers_to_digits(text: str) -> str:
    """Apply the conversion to lower-case text whose punctuation (except . % and currency signs) is gone."""
    text = _half(text)
    text = re.sub(r"([a-z])([0-9])", r"\1 \2", text)  # "b747" -> "b 747"
    text = re.sub(r"([0-9])([a-z])", r"\1 \2", text)
    text = re.sub(r"([0-9])\s+(st|nd|rd|th|s)\b", r"\1\2", text)  # but "10 th" -> "10th"
    text = " ".join(_Reader().read(text.split()))
    text = re.sub(r"([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b", _cents, text)  # "$2 and ¢70" -> "$2.70"
    text = re.sub(r"[€£$]0.([0-9]{1,2})\b", lambda m: f"¢{int(m.group(1))}", text)  # "$0.36" -> "¢36"
    return re.sub(r"\b1(s?)\b", r"one\1", text)  # "one" reads better than "1"
