"""Chinese output in the script asked for, on the four real Mandarin recordings with the real base weights.

With ``chinese_script`` left as-is the character error rate is the reference's (the golden outputs); with
``simplified`` no Traditional character is left (the reference writes 換一首歌 for 换一首歌) and the error rate
drops; the conversion reaches the text, the segments and the words alike.
"""

from __future__ import annotations

import unicodedata
from dataclasses import replace

import jiwer
import pytest
from conftest import DATA, golden, manifest_rows, require_shared

from tingxie.chinese import convert, convert_words
from tingxie.errors import OptionError
from tingxie.options import build_options
from tingxie.results import Word


def mandarin_rows() -> list[dict]:
    require_shared()
    rows = [r for r in manifest_rows() if r["language"] == "zh"]
    assert len(rows) == 4, "the shared data should hold four Mandarin recordings"
    return rows


def characters(text: str) -> str:
    """Letters and digits only: Chinese is scored by characters, punctuation aside."""
    return "".join(c for c in text if unicodedata.category(c)[0] in "LN")


def cer(reference: str, hypothesis: str) -> float:
    return jiwer.cer(characters(reference), characters(hypothesis))


def is_simplified(text: str) -> bool:
    """Every character is in GB 2312, the Simplified-only national character set (換 is not, 换 is)."""
    try:
        text.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


@pytest.fixture(scope="module")
def base():
    from tingxie import load_model

    return load_model("base", compute_type="float32")  # the reference switch: its outputs are what these tests compare with


@pytest.fixture(scope="module")
def outputs(base) -> dict:
    """{(script, id): result} for each recording, greedy with word timestamps as the golden outputs were made."""
    out = {}
    for row in mandarin_rows():
        for script in ("as-is", "simplified"):
            out[(script, row["id"])] = base.transcribe(str(DATA / row["path"]), temperature=0.0, word_timestamps=True, chinese_script=script)
    return out


def test_as_is_is_no_worse_than_the_reference(outputs):
    for row in mandarin_rows():
        ours, ref = outputs[("as-is", row["id"])], golden(f"{row['id']}.base.greedy")
        assert ours.language == "zh"
        assert cer(row["reference"], ours.text) <= cer(row["reference"], ref["text"]) + 1e-9, (row["id"], ours.text, ref["text"])


def test_simplified_leaves_no_traditional_character_and_lowers_the_error_rate(outputs):
    ours_total = ref_total = 0.0
    for row in mandarin_rows():
        result, ref = outputs[("simplified", row["id"])], golden(f"{row['id']}.base.greedy")
        texts = [result.text, *(s.text for s in result.segments), *(w.word for w in result.words)]
        assert all(is_simplified(t) for t in texts), (row["id"], texts)
        ours, theirs = cer(row["reference"], result.text), cer(row["reference"], ref["text"])
        assert ours <= theirs + 1e-9, (row["id"], result.text, ref["text"])
        ours_total, ref_total = ours_total + ours, ref_total + theirs
    assert not is_simplified(golden("zh_aishell2_IT0011W0001.base.greedy")["text"])  # the reference's 換一首歌
    assert outputs[("simplified", "zh_aishell2_IT0011W0001")].text == "换一首歌"
    assert ours_total < ref_total


def test_conversion_reaches_text_segments_and_words_alike(outputs):
    for row in mandarin_rows():
        result = outputs[("simplified", row["id"])]
        assert result.text == "".join(s.text for s in result.segments)
        for segment in result.segments:
            assert "".join(w.word for w in segment.words).strip() == segment.text.strip()
        before = outputs[("as-is", row["id"])]
        assert [(w.start, w.end) for w in result.words] == [(w.start, w.end) for w in before.words]  # only the spelling changes
        assert result.to_dict()["text"] == result.text


def test_traditional_on_request(base):
    path = DATA / next(r["path"] for r in mandarin_rows() if r["id"] == "zh_wenetspeech_net")
    result = base.transcribe(str(path), temperature=0.0, word_timestamps=True, chinese_script="traditional")
    assert result.text == "我有的時候說不清楚你們知道嗎"
    assert [w.word for w in result.words] == ["我有", "的時候", "說", "不", "清楚", "你們", "知道", "嗎"]


def test_chinese_words_are_timed_by_characters(outputs):
    """Words of a language written without spaces are whole characters (a token may hold part of one), as the reference's."""
    for row in mandarin_rows():
        ours = [w.to_dict() for w in outputs[("as-is", row["id"])].words]
        ref = [w for s in golden(f"{row['id']}.base.greedy")["segments"] for w in s["words"]]
        assert [w["word"] for w in ours] == [w["word"] for w in ref]
        assert all(abs(a["start"] - b["start"]) <= 0.1 and abs(a["end"] - b["end"]) <= 0.1 for a, b in zip(ours, ref))


def test_round_trip_on_whisper_output():
    """Simplified -> Traditional -> Simplified gives back what Whisper wrote, and the reverse trip too."""
    for row in mandarin_rows():
        text = golden(f"{row['id']}.base.greedy")["text"]
        simplified = convert(text, "simplified")
        traditional = convert(simplified, "traditional")
        assert traditional != simplified
        assert convert(traditional, "simplified") == simplified
        assert convert(convert(traditional, "simplified"), "traditional") == traditional
    assert convert("換一首歌", "simplified") == "换一首歌"
    assert convert("我有的时候说不清楚你们知道吗", "traditional") == "我有的時候說不清楚你們知道嗎"
    assert convert("Hello 換", "as-is") == "Hello 換"


def test_words_convert_in_context_and_keep_their_boundaries():
    words = [Word("头", 0.0, 0.2, 0.9), Word("发", 0.2, 0.4, 0.9), Word("很", 0.4, 0.5, 0.9), Word("长", 0.5, 0.7, 0.9)]
    converted = convert_words(words, "traditional")
    assert [w.word for w in converted] == list(convert("头发很长", "traditional"))  # 頭髮, not 頭發
    assert converted[1].word == "髮"
    assert [replace(w, word="") for w in converted] == [replace(w, word="") for w in words]


def test_chinese_script_option_is_checked():
    assert build_options(chinese_script="traditional").chinese_script == "traditional"
    with pytest.raises(OptionError, match="chinese_script"):
        build_options(chinese_script="cantonese")


def test_practice_in_mandarin_by_characters(base):
    """Practice works character by character in either script: the true sentence is all ok, one wrong
    sentence-final particle (吧 for 吗) is the only character flagged."""
    from tingxie.practice import REPLACED, practice

    path = DATA / next(r["path"] for r in mandarin_rows() if r["id"] == "zh_wenetspeech_net")
    right = practice(base, path, "我有的时候说不清楚，你们知道吗？")
    assert right.language == "zh" and len(right.words) == 14 and right.score == 100.0
    assert practice(base, path, "我有的時候說不清楚你們知道嗎", language="zh").score == 100.0
    wrong = practice(base, path, "我有的时候说不清楚你们知道吧", language="zh")
    assert [(w.word, w.verdict, w.heard) for w in wrong.words if w.verdict != "ok"] == [("吧", REPLACED, "吗")]
