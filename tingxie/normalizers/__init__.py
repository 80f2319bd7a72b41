"""Text normalisation before scoring: ``normalize(text, language)`` and how a language is counted.

English gets Whisper's English normaliser (numbers to digits, contractions, American spelling);
every other language the basic one (NFKC, lower-case, symbols and punctuation by Unicode category
to spaces). Languages written without spaces between words (Chinese, Japanese, Thai, ...) are
scored by characters: their normalised text has its spaces removed and "words" are characters.
"""

from __future__ import annotations

from .basic import basic_normalize
from .english import english_normalize

__all__ = ["CHARACTER_LANGUAGES", "basic_normalize", "english_normalize", "normalize", "scoring_unit", "scoring_tokens"]

# Written without spaces between words: a "word" error rate over characters is the meaningful one.
CHARACTER_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "my", "km", "bo"})


def scoring_unit(language: str | None) -> str:
    """'character' for languages written without spaces, else 'word'."""
    return "character" if language in CHARACTER_LANGUAGES else "word"


def normalize(text: str, language: str | None) -> str:
    """The text as it is scored: normalised for its language, stripped, single spaces.

    ``language`` None or 'en' uses the English normaliser. For character languages the spaces are
    removed (Chinese transcripts differ in where they put them, and that is no error).
    """
    if language in (None, "en"):
        return english_normalize(text).strip()
    cleaned = basic_normalize(text).strip()
    return cleaned.replace(" ", "") if language in CHARACTER_LANGUAGES else cleaned


def scoring_tokens(text: str, language: str | None) -> str:
    """The normalised text with its scoring units separated by spaces: words, or characters for zh/ja/th/..."""
    cleaned = normalize(text, language)
    return " ".join(cleaned) if language in CHARACTER_LANGUAGES else cleaned
