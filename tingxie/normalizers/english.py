"""English text normalisation for WER, with the behaviour of Whisper's EnglishTextNormalizer.

Lower-case; drop [bracketed], <tagged> and (parenthesised) spans and the fillers hmm, mm, mhm, mmm,
uh, um; expand contractions and titles (won't -> will not, Mr -> mister); drop punctuation and
accents; spoken numbers to digits (``numbers.py``); British to American spelling; one space
between words. Scores computed after it are comparable with the figures Whisper's paper reports.

The spelling list ``assets/english_spelling.json`` (1,739 British -> American pairs) is the one
openai-whisper ships (MIT licence, Copyright (c) 2022 OpenAI), itself from tysto.com's list.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files

from .basic import collapse_spaces, drop_annotations, symbols_to_spaces
from .numbers import spoken_numbers_to_digits

FILLERS = re.compile(r"\b(hmm|mm|mhm|mmm|uh|um)\b")

# Applied in this order: whole words first, then the general suffix rules ("n't", "'re", ...).
CONTRACTIONS = (
    (r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"\blet's\b", "let us"), (r"\bain't\b", "aint"),
    (r"\by'all\b", "you all"), (r"\bwanna\b", "want to"), (r"\bgotta\b", "got to"), (r"\bgonna\b", "going to"),
    (r"\bi'ma\b", "i am going to"), (r"\bimma\b", "i am going to"), (r"\bwoulda\b", "would have"),
    (r"\bcoulda\b", "could have"), (r"\bshoulda\b", "should have"), (r"\bma'am\b", "madam"),
)
TITLES = {
    "mr": "mister", "mrs": "missus", "st": "saint", "dr": "doctor", "prof": "professor", "capt": "captain",
    "gov": "governor", "ald": "alderman", "gen": "general", "sen": "senator", "rep": "representative",
    "pres": "president", "rev": "reverend", "hon": "honorable", "asst": "assistant", "assoc": "associate",
    "lt": "lieutenant", "col": "colonel", "jr": "junior", "sr": "senior", "esq": "esquire",
}
SUFFIXES = (
    # perfect tenses first, where "'s" and "'d" mean has/had rather than is/would ("'s done" is ambiguous)
    (r"'d been\b", " had been"), (r"'s been\b", " has been"), (r"'d gone\b", " had gone"), (r"'s gone\b", " has gone"),
    (r"'d done\b", " had done"), (r"'s got\b", " has got"),
    (r"n't\b", " not"), (r"'re\b", " are"), (r"'s\b", " is"), (r"'d\b", " would"), (r"'ll\b", " will"),
    (r"'t\b", " not"), (r"'ve\b", " have"), (r"'m\b", " am"),
)
_REPLACEMENTS = tuple((re.compile(p), r) for p, r in
                      (*CONTRACTIONS, *((rf"\b{short}\b", f"{long} ") for short, long in TITLES.items()), *SUFFIXES))
# Symbols that belong to numbers and survive until the numbers are read.
NUMBER_SYMBOLS = ".%$¢€£"


@cache
def spelling_map() -> dict[str, str]:
    return json.loads(files("tingxie").joinpath("assets/english_spelling.json").read_text(encoding="utf-8"))


def american_spelling(text: str) -> str:
    mapping = spelling_map()
    return " ".join(mapping.get(word, word) for word in text.split())


def english_normalize(text: str) -> str:
    """Normalised English for scoring, e.g. "Mr. Smith paid $20 (approx.), uh, twenty five percent" ->
    "mister smith paid $20 25%". May keep a leading or trailing space; scoring strips it."""
    text = drop_annotations(text.lower())
    text = FILLERS.sub("", text)
    text = re.sub(r"\s+'", "'", text)  # "he 's" -> "he's", as some transcripts split clitics
    for pattern, replacement in _REPLACEMENTS:
        text = pattern.sub(replacement, text)
    text = re.sub(r"(\d),(\d)", r"\1\2", text)  # 1,000 -> 1000
    text = re.sub(r"\.([^0-9]|$)", r" \1", text)  # a full stop, not a decimal point
    text = symbols_to_spaces(text, keep=NUMBER_SYMBOLS, drop_diacritics=True)
    text = spoken_numbers_to_digits(text)
    text = american_spelling(text)
    text = re.sub(r"[.$¢€£]([^0-9])", r" \1", text)  # currency signs and points left without a number
    text = re.sub(r"([^0-9])%", r"\1 ", text)
    return collapse_spaces(text)
