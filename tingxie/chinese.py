"""Chinese output in the script the user chose: OpenCC conversion of text, segments and words,
and the prompt that steers Whisper toward that script and toward punctuated sentences.

Whisper writes Mandarin in whichever script its training text happened to use (the base model
writes 換一首歌 for 换一首歌); OpenCC's phrase-aware dictionaries put the output into one script.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING

from .errors import OptionError

if TYPE_CHECKING:
    from .results import Segment

AS_IS = "as-is"
CHINESE_SCRIPTS = ("simplified", "traditional", AS_IS)
# Languages whose text is written in Chinese characters and converted (Cantonese too, by large-v3).
CHINESE_LANGUAGES = frozenset({"zh", "yue"})

# OpenCC configuration per target script: Traditional -> Simplified, Simplified -> Traditional (OpenCC standard).
_OPENCC_CONFIG = {"simplified": "t2s", "traditional": "s2t"}

# A punctuated sentence in the wanted script, given as the first window's prompt: Whisper continues in
# the style of its prompt, so it writes that script and puts commas and full stops in. (On the shared
# Mandarin with base it costs characters in Simplified, so it is opt-in: see the chinese_prompt option.)
_STEERING_PROMPTS = {
    "simplified": "以下是普通话的句子。",
    "traditional": "以下是普通話的句子。",
}


def check_script(script: str) -> str:
    """The script name, or OptionError for anything but simplified, traditional or as-is."""
    if script not in CHINESE_SCRIPTS:
        raise OptionError(f"chinese_script must be one of {', '.join(CHINESE_SCRIPTS)}, not {script!r}")
    return script


@cache
def _converter(script: str):
    try:
        import opencc
    except ImportError as e:  # the package extra 'chinese' installs it
        raise OptionError("chinese_script needs OpenCC: pip install 'opencc==1.4.2' (or the tingxie[chinese] extra)") from e
    return opencc.OpenCC(_OPENCC_CONFIG[script])


def convert(text: str, script: str) -> str:
    """The text in Simplified or Traditional characters; unchanged for as-is."""
    if check_script(script) == AS_IS or not text:
        return text
    return _converter(script).convert(text)


def steering_prompt(script: str) -> str | None:
    """The prompt that steers Whisper toward the script (None for as-is)."""
    return _STEERING_PROMPTS.get(check_script(script))


def applies_to(language: str | None, script: str) -> bool:
    """Whether text in this language is converted for this script choice."""
    return script != AS_IS and language in CHINESE_LANGUAGES


def convert_segment(segment: Segment, script: str, language: str | None) -> Segment:
    """The segment with its text and every word converted (its tokens stay the model's own).

    ``language`` is the file's language, used where the segment has none of its own.
    """
    if not applies_to(segment.language or language, script):
        return segment
    words = None if segment.words is None else convert_words(segment.words, script)
    return replace(segment, text=convert(segment.text, script), words=words)


def convert_words(words: list, script: str) -> list:
    """Words converted in the context of their neighbours (OpenCC chooses a character by its phrase),
    cut back at the same places; word by word only where the conversion changed the length.
    """
    joined = "".join(w.word for w in words)
    converted = convert(joined, script)
    if len(converted) != len(joined):
        return [replace(w, word=convert(w.word, script)) for w in words]
    out, at = [], 0
    for w in words:
        out.append(replace(w, word=converted[at : at + len(w.word)]))
        at += len(w.word)
    return out
