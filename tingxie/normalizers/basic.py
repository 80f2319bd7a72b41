"""Language-neutral text normalisation for scoring: Unicode forms, case, symbols and spacing."""

from __future__ import annotations

import re
import unicodedata

# Letters that NFKD does not split into a base letter and a combining mark; spelled out by hand.
EXTRA_LETTERS = {
    "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ẞ": "SS",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "th", "ł": "l", "Ł": "L",
}

# Bracketed spans ([laughter], <noise>) and parenthesised asides are annotations, not speech.
_BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]")
_PARENTHESISED = re.compile(r"\(([^)]+?)\)")
_SPACES = re.compile(r"\s+")


def drop_annotations(text: str) -> str:
    return _PARENTHESISED.sub("", _BRACKETED.sub("", text))


def collapse_spaces(text: str) -> str:
    return _SPACES.sub(" ", text)


def symbols_to_spaces(text: str, *, keep: str = "", drop_diacritics: bool = False) -> str:
    """Marks, symbols and punctuation (Unicode categories M*, S*, P*) become spaces, except those in ``keep``.

    With ``drop_diacritics`` the text is decomposed (NFKD) and combining accents (Mn) are removed
    (é -> e); otherwise it is composed (NFKC) and accented letters stay whole.
    """
    out = []
    for c in unicodedata.normalize("NFKD" if drop_diacritics else "NFKC", text):
        category = unicodedata.category(c)
        if c in keep:
            out.append(c)
        elif drop_diacritics and c in EXTRA_LETTERS:
            out.append(EXTRA_LETTERS[c])
        elif drop_diacritics and category == "Mn":
            continue
        elif category[0] in "MSP":
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


def basic_normalize(text: str, *, drop_diacritics: bool = False) -> str:
    """Lower-case, drop annotations, turn symbols and punctuation into spaces, collapse spaces.

    The same steps as Whisper's BasicTextNormalizer, for languages without a dedicated normaliser.
    The result may keep a leading or trailing space; scoring strips it.
    """
    text = drop_annotations(text.lower())
    return collapse_spaces(symbols_to_spaces(text, drop_diacritics=drop_diacritics).lower())
