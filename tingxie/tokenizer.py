"""Whisper's tokenizers: the byte-level BPE vocabularies plus Whisper's special tokens.

Two vocabularies ship in ``tingxie/assets`` (written by ``scripts/make_vocab.py``): ``gpt2`` for
the English-only models and ``multilingual`` for the others. After the vocabulary come, in this
order, the special tokens: <|endoftext|>, <|startoftranscript|>, one <|xx|> per language, the task
tokens, <|startoflm|>, <|startofprev|>, <|nospeech|>, <|notimestamps|> and the 1501 timestamps
<|0.00|> ... <|30.00|>. Their ids are therefore fixed by the order of :data:`LANGUAGES`.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING

from .errors import OptionError, UnknownLanguageError

if TYPE_CHECKING:
    import tiktoken

# Code -> English name, in the order of the language tokens (the order fixes their ids).
LANGUAGES: Mapping[str, str] = MappingProxyType(
    {
        "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
        "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
        "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
        "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
        "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
        "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
        "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
        "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
        "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
        "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
        "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
        "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
        "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
        "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
        "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
        "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
        "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
        "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
        "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
        "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
    }
)  # fmt: skip

# Name or alias (lower case) -> code.
TO_LANGUAGE_CODE: Mapping[str, str] = MappingProxyType(
    {
        **{name: code for code, name in LANGUAGES.items()},
        "burmese": "my",
        "valencian": "ca",
        "flemish": "nl",
        "haitian": "ht",
        "letzeburgesch": "lb",
        "pushto": "ps",
        "panjabi": "pa",
        "moldavian": "ro",
        "moldovan": "ro",
        "sinhalese": "si",
        "castilian": "es",
        "mandarin": "zh",
    }
)

TASKS = ("transcribe", "translate")

# Written without spaces between words: split them wherever a whole character ends instead.
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})

# GPT-2's pre-tokenizer regex, which both vocabularies were trained with.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|> in steps of 20 ms

_REPLACEMENT = "\ufffd"


def normalize_language(value: str | None) -> str | None:
    """A language code from a code, a name or an alias in any case; None for None, '' or 'auto'.

    Raises UnknownLanguageError for anything else.
    """
    if value is None:
        return None
    key = value.strip().lower()
    if key in ("", "auto"):
        return None
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise UnknownLanguageError(
        f"unknown language {value!r}; use a code such as en, zh, fr or a name such as English (see `tingxie languages`)"
    )


def timestamp_text(index: int) -> str:
    """The text of the index-th timestamp token, e.g. 54 -> '<|1.08|>' (exact, no float rounding)."""
    return f"<|{index // 50}.{index % 50 * 2:02d}|>"


def special_token_names(num_languages: int) -> list[str]:
    """Whisper's special tokens in id order, for a model knowing the first num_languages languages."""
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in list(LANGUAGES)[:num_languages]),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *(timestamp_text(i) for i in range(N_TIMESTAMPS)),
    ]


def load_ranks(name: str) -> dict[bytes, int]:
    """Token bytes -> rank of a vocabulary shipped in tingxie/assets ('gpt2' or 'multilingual'), read afresh
    (not cached: the encoding built from it is, and it keeps this very dict; a second copy cost ~10 MiB)."""
    from binascii import a2b_base64  # base64.b64decode's checks cost 2x on 50k tokens (start-up time)
    from importlib.resources import files

    fields = files("tingxie").joinpath("assets", f"{name}.tiktoken").read_text(encoding="ascii").split()  # token rank token rank ...
    return dict(zip(map(a2b_base64, fields[0::2]), map(int, fields[1::2])))


@lru_cache(maxsize=None)
def get_encoding(name: str = "gpt2", num_languages: int = 99) -> tiktoken.Encoding:
    """The tiktoken encoding of a vocabulary with Whisper's special tokens appended."""
    import tiktoken

    ranks = load_ranks(name)
    first = len(ranks)
    specials = {token: first + i for i, token in enumerate(special_token_names(num_languages))}
    return tiktoken.Encoding(
        name=f"{name}-{num_languages}",
        explicit_n_vocab=first + len(specials),
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=specials,
    )


@dataclass(frozen=True, eq=False)
class Tokenizer:
    """A tiktoken encoding with named access to Whisper's special tokens.

    ``language`` (a code) and ``task`` make up the start-of-transcript sequence; both are None for
    English-only models.
    """

    encoding: tiktoken.Encoding
    num_languages: int
    language: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise OptionError(f"unknown task {self.task!r}; use 'transcribe' or 'translate'")
        if self.language is not None and self.language not in self.all_language_codes:
            raise _not_in_model(self.language, self.num_languages)

    # --- text ---------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """The tokens of plain text; special-token spellings in it are encoded as ordinary text."""
        return self.encoding.encode_ordinary(text)

    def decode(self, tokens: Iterable[int]) -> str:
        """The text of the tokens, timestamp tokens left out."""
        begin = self.timestamp_begin
        return self.encoding.decode([int(t) for t in tokens if t < begin])

    def decode_with_timestamps(self, tokens: Iterable[int]) -> str:
        """The text of the tokens with every special token spelled out, e.g. '<|1.08|>'."""
        return self.encoding.decode([int(t) for t in tokens])

    # --- special tokens -----------------------------------------------------------------------

    @cached_property
    def special_tokens(self) -> Mapping[str, int]:
        """Spelling -> id of every special token."""
        return MappingProxyType({s: self.encoding.encode_single_token(s) for s in self.encoding.special_tokens_set})

    @cached_property
    def eot(self) -> int:
        return self.special_tokens["<|endoftext|>"]

    @cached_property
    def sot(self) -> int:
        return self.special_tokens["<|startoftranscript|>"]

    @cached_property
    def translate(self) -> int:
        return self.special_tokens["<|translate|>"]

    @cached_property
    def transcribe(self) -> int:
        return self.special_tokens["<|transcribe|>"]

    @cached_property
    def sot_lm(self) -> int:
        return self.special_tokens["<|startoflm|>"]

    @cached_property
    def sot_prev(self) -> int:
        return self.special_tokens["<|startofprev|>"]

    @cached_property
    def no_speech(self) -> int:
        return self.special_tokens["<|nospeech|>"]

    @cached_property
    def no_timestamps(self) -> int:
        return self.special_tokens["<|notimestamps|>"]

    @cached_property
    def timestamp_begin(self) -> int:
        """The id of <|0.00|>; every id from here up is a timestamp."""
        return self.special_tokens[timestamp_text(0)]

    # --- languages ----------------------------------------------------------------------------

    @cached_property
    def all_language_codes(self) -> tuple[str, ...]:
        """The codes of the languages this model knows, in token order."""
        return tuple(LANGUAGES)[: self.num_languages]

    @cached_property
    def all_language_tokens(self) -> tuple[int, ...]:
        """The language tokens, in the order of all_language_codes."""
        return tuple(self.special_tokens[f"<|{code}|>"] for code in self.all_language_codes)

    @cached_property
    def language_token(self) -> int:
        """The token of this tokenizer's language."""
        if self.language is None:
            raise ValueError("this tokenizer has no language (English-only models have no language tokens)")
        return self.to_language_token(self.language)

    def to_language_token(self, language: str) -> int:
        """The token of a language given by code, name or alias."""
        code = normalize_language(language)
        if code is None or code not in self.all_language_codes:
            raise _not_in_model(language, self.num_languages)
        return self.special_tokens[f"<|{code}|>"]

    # --- prompts ------------------------------------------------------------------------------

    @cached_property
    def sot_sequence(self) -> tuple[int, ...]:
        """<|startoftranscript|>, then the language and task tokens where they are set."""
        sequence = [self.sot]
        if self.language is not None:
            sequence.append(self.to_language_token(self.language))
        if self.task is not None:
            sequence.append(self.translate if self.task == "translate" else self.transcribe)
        return tuple(sequence)

    @cached_property
    def sot_sequence_including_notimestamps(self) -> tuple[int, ...]:
        return (*self.sot_sequence, self.no_timestamps)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Sorted ids of symbols to suppress so that no speaker tags or sound annotations are
        written (e.g. '♪♪♪', '( SPEAKING FOREIGN LANGUAGE )', '[DAVID]'), while commas, periods,
        question and exclamation marks stay allowed.
        """
        symbols = [*'"#()*+/:;<=>@[\\]^_`{|}~「」『』']
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        # Musical signs (U+2640..U+267F) may take several tokens; their first one is shared by
        # the whole block only, so it is safe to suppress.
        musical = "♩♪♫♬♭♮♯"
        # hyphens and apostrophes are fine inside words, not at the start of one
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in [*symbols, *musical]:
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in musical:
                    result.add(tokens[0])
        return tuple(sorted(result))

    # --- words --------------------------------------------------------------------------------

    def split_to_word_tokens(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
        """Words and the tokens of each: at spaces and punctuation, or for languages written
        without spaces, wherever a whole unicode character ends.
        """
        if self.language in UNSPACED_LANGUAGES:
            return self.split_tokens_on_unicode(tokens)
        return self.split_tokens_on_spaces(tokens)

    def split_tokens_on_unicode(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
        """Groups of tokens that each decode to whole characters (a token may hold part of one)."""
        full = self.decode_with_timestamps(tokens)
        words: list[str] = []
        groups: list[list[int]] = []
        pending: list[int] = []
        offset = 0  # where in `full` the pending group's text starts
        for token in tokens:
            pending.append(token)
            text = self.decode_with_timestamps(pending)
            bad = text.find(_REPLACEMENT)
            # a replacement character is a partial character, unless the full text has it too
            at = offset + bad
            if bad < 0 or (at < len(full) and full[at] == _REPLACEMENT):
                words.append(text)
                groups.append(pending)
                pending = []
                offset += len(text)
        return words, groups

    def split_tokens_on_spaces(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
        """Whole characters joined into words: a new word starts at a space, a special token or
        a piece that is all punctuation (or whitespace); other pieces join the word before.
        """
        pieces, piece_tokens = self.split_tokens_on_unicode(tokens)
        words: list[str] = []
        groups: list[list[int]] = []
        for piece, toks in zip(pieces, piece_tokens):
            # note that "" is in string.punctuation, so whitespace-only pieces stand alone
            starts_word = not words or toks[0] >= self.eot or piece.startswith(" ") or piece.strip() in string.punctuation
            if starts_word:
                words.append(piece)
                groups.append(list(toks))
            else:
                words[-1] += piece
                groups[-1].extend(toks)
        return words, groups


def _not_in_model(language: str, num_languages: int) -> UnknownLanguageError:
    """The error for a language Whisper knows but a model with num_languages languages does not."""
    code = normalize_language(language)  # raises for names Whisper does not know at all
    if code is None:
        return UnknownLanguageError("no language given; name one such as 'en'")
    hint = " (cantonese needs a 100-language model such as large-v3)" if code == "yue" else ""
    return UnknownLanguageError(f"language {code!r} ({LANGUAGES[code]}) is not known to a model of {num_languages} languages{hint}")


def get_tokenizer(
    multilingual: bool, *, num_languages: int = 99, language: str | None = None, task: str | None = None
) -> Tokenizer:
    """The tokenizer of an English-only (``multilingual=False``) or a multilingual model.

    ``language`` is a code, a name or an alias; multilingual tokenizers default to English and
    transcription, English-only ones have neither (and refuse other languages and translation).
    """
    if not 1 <= num_languages <= len(LANGUAGES):
        raise OptionError(f"num_languages must be between 1 and {len(LANGUAGES)}, not {num_languages}")
    if task is not None and task not in TASKS:
        raise OptionError(f"unknown task {task!r}; use 'transcribe' or 'translate'")
    code = normalize_language(language)
    if multilingual:
        return _tokenizer(True, num_languages, code or "en", task or "transcribe")
    if code not in (None, "en"):
        raise OptionError(f"an English-only model cannot transcribe {LANGUAGES[code]!r}; use a multilingual model")
    if task == "translate":
        raise OptionError("an English-only model cannot translate; use a multilingual model")
    return _tokenizer(False, num_languages, None, None)


@lru_cache(maxsize=None)
def _tokenizer(multilingual: bool, num_languages: int, language: str | None, task: str | None) -> Tokenizer:
    # cached on the validated arguments: a Tokenizer is immutable, so one per combination is enough
    encoding = get_encoding("multilingual" if multilingual else "gpt2", num_languages)
    return Tokenizer(encoding=encoding, num_languages=num_languages, language=language, task=task)
