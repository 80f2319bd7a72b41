"""Output writers against the reference's formats, on real results of openai-whisper (tiny.en)."""

from __future__ import annotations

import itertools
import json
import os
import re
import stat

import pytest
from conftest import golden

from tingxie.errors import OptionError
from tingxie.writers import (
    FORMATS,
    SubtitleOptions,
    format_timestamp,
    render,
    write_result,
)

TIME = r"(\d\d:)?\d\d:\d\d[.,]\d\d\d"


def _without_words(result: dict) -> dict:
    return {**result, "segments": [{k: v for k, v in s.items() if k != "words"} for s in result["segments"]]}


def _words(result: dict) -> list[dict]:
    return [w for s in result["segments"] for w in s["words"]]


def _seconds(stamp: str) -> float:
    parts = stamp.replace(",", ".").split(":")
    return sum(float(p) * 60**i for i, p in enumerate(reversed(parts)))


def _srt_cues(text: str) -> list[tuple[float, float, list[str]]]:
    """(start, end, lines) of each cue; also checks the numbering runs 1, 2, 3, ..."""
    assert text.endswith("\n\n") or text == ""
    cues = []
    for number, block in enumerate(text[:-2].split("\n\n") if text else [], start=1):
        index, times, *lines = block.split("\n")
        assert index == str(number)
        m = re.fullmatch(rf"({TIME}) --> ({TIME})", times)
        assert m, times
        cues.append((_seconds(m.group(1)), _seconds(m.group(3)), lines))
    return cues


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("seconds", "hours", "marker", "expected"),
    [
        (0, False, ".", "00:00.000"),
        (0, True, ",", "00:00:00,000"),
        (3661.5, False, ".", "01:01:01.500"),
        (3661.5, True, ",", "01:01:01,500"),
        (8.06, False, ".", "00:08.060"),
        (59.9996, False, ".", "01:00.000"),  # rounding carries into the minutes
        (61.25, True, ".", "00:01:01.250"),
        (360000.0, False, ".", "100:00:00.000"),
    ],
)
def test_format_timestamp(seconds: float, hours: bool, marker: str, expected: str) -> None:
    assert format_timestamp(seconds, always_include_hours=hours, decimal_marker=marker) == expected


def test_format_timestamp_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_timestamp(-0.5)


# ---------------------------------------------------------------- jfk, exact content

JFK_1 = "And so my fellow Americans ask not what your country can do for you"
JFK_2 = "ask what you can do for your country"


def test_jfk_txt() -> None:
    assert render(golden("jfk.greedy"), "txt") == f"{JFK_1}\n{JFK_2}\n"


@pytest.mark.parametrize("strip_words", [False, True])
def test_jfk_vtt(strip_words: bool) -> None:
    result = golden("jfk.greedy")
    result = _without_words(result) if strip_words else result
    assert render(result, "vtt") == (
        f"WEBVTT\n\n00:00.000 --> 00:08.060\n{JFK_1}\n\n00:08.060 --> 00:10.500\n{JFK_2}\n\n"
    )


@pytest.mark.parametrize("strip_words", [False, True])
def test_jfk_srt(strip_words: bool) -> None:
    result = golden("jfk.greedy")
    result = _without_words(result) if strip_words else result
    assert render(result, "srt") == (
        f"1\n00:00:00,000 --> 00:00:08,060\n{JFK_1}\n\n2\n00:00:08,060 --> 00:00:10,500\n{JFK_2}\n\n"
    )


def test_jfk_tsv() -> None:
    assert render(golden("jfk.greedy"), "tsv") == f"start\tend\ttext\n0\t8060\t{JFK_1}\n8060\t10500\t{JFK_2}\n"


def test_tsv_and_vtt_escape_separators() -> None:
    result = _without_words(golden("jfk.greedy"))
    result["segments"][0]["text"] = " a\tb --> c"
    assert render(result, "tsv").splitlines()[1] == "0\t8060\ta b --> c"
    # only tsv replaces tabs; subtitles replace the "-->" that would end a cue's timing line
    assert render(result, "vtt").split("\n")[3] == "a\tb -> c"


def test_jfk_line_regrouping_exact() -> None:
    vtt = render(golden("jfk.greedy"), "vtt", SubtitleOptions(max_line_width=20, max_line_count=2))
    assert vtt == (
        "WEBVTT\n\n"
        "00:00.000 --> 00:04.520\nAnd so my fellow\nAmericans ask not\n\n"
        "00:04.520 --> 00:08.660\nwhat your country\ncan do for you ask\n\n"
        "00:08.660 --> 00:10.500\nwhat you can do for\nyour country\n\n"
    )


def test_jfk_max_words_per_line_exact() -> None:
    cues = _srt_cues(render(golden("jfk.greedy"), "srt", SubtitleOptions(max_words_per_line=3)))
    texts = [" ".join(lines) for _, _, lines in cues]
    # runs of three words, restarting at the segment boundary
    assert texts == [
        "And so my", "fellow Americans ask", "not what your", "country can do", "for you",
        "ask what you", "can do for", "your country",
    ]
    assert cues[0][:2] == (0.0, 1.46) and cues[4][:2] == (7.02, 8.06)


def test_jfk_highlight_words_exact() -> None:
    cues = _srt_cues(render(golden("jfk.greedy"), "srt", SubtitleOptions(highlight_words=True)))
    assert len(cues) == 22  # jfk's words follow one another without gaps
    assert cues[0] == (0.0, 0.76, [JFK_1.replace("And", "<u>And</u>", 1)])
    assert cues[4] == (1.76, 2.26, [JFK_1.replace("Americans", "<u>Americans</u>")])
    assert cues[-1] == (10.22, 10.5, [JFK_2.replace("country", "<u>country</u>")])


# ---------------------------------------------------------------- json


@pytest.mark.parametrize("name", ["jfk.greedy", "real_concat.greedy", "zh_aishell1_BAC009S0764W0121.base.greedy"])
def test_json_round_trips(name: str) -> None:
    result = golden(name)
    text = render(result, "json")
    assert json.loads(text) == result
    # non-ASCII stays readable rather than \u-escaped
    if not result["text"].isascii():
        assert result["text"] in text


def test_json_with_unencodable_text_still_round_trips(tmp_path) -> None:
    result = {"text": "bad \ud800 surrogate", "segments": [], "language": "en"}
    [path] = write_result(result, "x.wav", tmp_path, "json")
    assert json.loads(path.read_text(encoding="utf-8")) == result


# ---------------------------------------------------------------- real_concat, every format


def test_real_concat_plain_formats() -> None:
    result = golden("real_concat.greedy")
    segments = result["segments"]
    assert render(result, "txt").splitlines() == [s["text"].strip() for s in segments]
    rows = render(result, "tsv").splitlines()
    assert rows[0] == "start\tend\ttext"
    for row, s in zip(rows[1:], segments, strict=True):
        start, end, text = row.split("\t")
        assert (int(start), int(end), text) == (round(1000 * s["start"]), round(1000 * s["end"]), s["text"].strip())


@pytest.mark.parametrize("strip_words", [False, True])
def test_real_concat_one_cue_per_segment(strip_words: bool) -> None:
    result = golden("real_concat.greedy")
    result = _without_words(result) if strip_words else result
    cues = _srt_cues(render(result, "srt"))
    assert [" ".join(lines) for _, _, lines in cues] == [s["text"].strip() for s in result["segments"]]
    vtt = render(result, "vtt")
    assert vtt.startswith("WEBVTT\n\n")
    assert len(re.findall(rf"^{TIME} --> {TIME}$", vtt, flags=re.MULTILINE)) == len(result["segments"])
    for (start, end, _), s in zip(cues, result["segments"], strict=True):
        # with words the cue spans the words, else the segment
        lo = s["words"][0]["start"] if not strip_words else s["start"]
        hi = s["words"][-1]["end"] if not strip_words else s["end"]
        assert (start, end) == (pytest.approx(lo, abs=5e-4), pytest.approx(hi, abs=5e-4))


def _assign(cues: list[tuple[float, float, list[str]]], words: list[dict]) -> list[list[int]]:
    """Word indices of each cue, checking that the cues hold every word once, in order.

    Words need not start with a space ("sub" + "-licence,"), so cues are matched to words on their
    text with all whitespace removed.
    """
    flat = ["".join(w["word"].split()) for w in words]
    out, k = [], 0
    for _, _, lines in cues:
        rest = "".join("".join(lines).split())
        group = []
        while rest:
            assert k < len(flat) and rest.startswith(flat[k]), (rest, flat[k : k + 3])
            rest = rest[len(flat[k]) :]
            group.append(k)
            k += 1
        assert group
        out.append(group)
    assert k == len(flat)
    return out


def _segment_of(result: dict) -> list[int]:
    return [i for i, s in enumerate(result["segments"]) for _ in s["words"]]


@pytest.mark.parametrize(("width", "count"), [(42, 2), (30, 2), (16, 1), (10, 3), (5, 2), (25, None)])
def test_line_regrouping(width: int, count: int | None) -> None:
    result = golden("real_concat.greedy")
    words = _words(result)
    assert all(w["word"].strip() for w in words)
    cues = _srt_cues(render(result, "srt", SubtitleOptions(max_line_width=width, max_line_count=count)))
    stripped = {w["word"].strip() for w in words}
    for _, _, lines in cues:
        for line in lines:
            assert len(line) <= width or line in stripped, line
        if count is not None:
            assert len(lines) <= count
    groups = _assign(cues, words)
    for (start, end, _), group in zip(cues, groups, strict=True):
        assert start == pytest.approx(words[group[0]]["start"], abs=5e-4)
        assert end == pytest.approx(words[group[-1]]["end"], abs=5e-4)
    segment_of = _segment_of(result)
    if count is None:
        # without a line count the segments are kept: no cue crosses one's boundary
        assert all(len({segment_of[i] for i in g}) == 1 for g in groups)
    else:
        # a pause over 3 s between word starts always opens a new cue
        for g in groups:
            assert all(words[b]["start"] - words[a]["start"] <= 3.0 for a, b in itertools.pairwise(g))
        assert any(len({segment_of[i] for i in g}) > 1 for g in groups) or width <= 10


@pytest.mark.parametrize("n", [1, 2, 5])
def test_max_words_per_line(n: int) -> None:
    result = golden("real_concat.greedy")
    words = _words(result)
    cues = _srt_cues(render(result, "srt", SubtitleOptions(max_words_per_line=n)))
    groups = _assign(cues, words)
    segment_of = _segment_of(result)
    assert all(1 <= len(g) <= n and len({segment_of[i] for i in g}) == 1 for g in groups)
    # each segment is cut into ceil(len / n) runs
    assert len(cues) == sum(-(-len(s["words"]) // n) for s in result["segments"])


def test_max_words_per_line_ignored_with_both_line_limits() -> None:
    result = golden("real_concat.greedy")
    both = SubtitleOptions(max_line_width=30, max_line_count=2)
    assert render(result, "vtt", SubtitleOptions(max_line_width=30, max_line_count=2, max_words_per_line=2)) == render(
        result, "vtt", both
    )


def test_options_ignored_without_word_timings() -> None:
    result = _without_words(golden("real_concat.greedy"))
    fancy = SubtitleOptions(max_line_width=10, max_line_count=1, highlight_words=True, max_words_per_line=1)
    for fmt in ("txt", "vtt", "srt", "tsv", "json"):
        assert render(result, fmt, fancy) == render(result, fmt)


@pytest.mark.parametrize("options", [SubtitleOptions(highlight_words=True), SubtitleOptions(max_line_width=20, max_line_count=2, highlight_words=True)])
def test_highlight_words(options: SubtitleOptions) -> None:
    result = golden("real_concat.greedy")
    words = _words(result)
    cues = _srt_cues(render(result, "srt", options))
    underlined = []
    for i, (start, end, lines) in enumerate(cues):
        text = "\n".join(lines)
        marked = re.findall(r"<u>(.*?)</u>", text)
        assert len(marked) <= 1
        if marked:
            underlined.append((marked[0], start, end))
        else:
            # a plain cue fills the silence between two underlined words of the same subtitle
            assert 0 < i < len(cues) - 1
            assert cues[i - 1][1] == start and cues[i + 1][0] == end
    # every word underlined exactly once, in order, at its own time
    assert [u[0] for u in underlined] == [w["word"].strip() for w in words]
    for (_, start, end), w in zip(underlined, words, strict=True):
        assert (start, end) == (pytest.approx(w["start"], abs=5e-4), pytest.approx(w["end"], abs=5e-4))
    assert len(cues) > len(words)  # real_concat has pauses inside its subtitles


# ---------------------------------------------------------------- options and errors


@pytest.mark.parametrize(
    "kwargs",
    [{"max_line_width": 0}, {"max_line_count": -1}, {"max_words_per_line": 0}, {"max_line_width": True},
     {"max_line_width": "20"}, {"highlight_words": "yes"}],
)
def test_invalid_options(kwargs: dict) -> None:
    with pytest.raises(OptionError):
        SubtitleOptions(**kwargs)


def test_unknown_format(tmp_path) -> None:
    result = golden("jfk.greedy")
    assert FORMATS == ("txt", "vtt", "srt", "tsv", "json", "all")
    for fmt in ("docx", "all", "SRT", ""):
        with pytest.raises(OptionError):
            render(result, fmt)
    with pytest.raises(OptionError):
        write_result(result, "jfk.flac", tmp_path / "out", "docx")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- writing files


def test_write_all(tmp_path) -> None:
    result = golden("jfk.greedy")
    out = tmp_path / "deep" / "out"
    paths = write_result(result, "/some/where/jfk.speech.flac", out, "all")
    assert [p.name for p in paths] == [f"jfk.speech.{ext}" for ext in ("txt", "vtt", "srt", "tsv", "json")]
    assert sorted(os.listdir(out)) == sorted(p.name for p in paths)  # no temporary files left
    for p in paths:
        assert p.read_text(encoding="utf-8") == render(result, p.suffix[1:])
    # the files get the mode a plain open() would give them (not mkstemp's 0600)
    plain = tmp_path / "plain"
    plain.write_text("")
    assert stat.S_IMODE(paths[0].stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_write_one_replaces_existing(tmp_path) -> None:
    target = tmp_path / "jfk.srt"
    target.write_text("stale\n" * 1000)
    paths = write_result(golden("jfk.greedy"), "jfk.wav", tmp_path, "srt", SubtitleOptions(max_words_per_line=4))
    assert paths == [target]
    assert target.read_text(encoding="utf-8").startswith("1\n00:00:00,000 --> 00:00:01,760\nAnd so my fellow\n")
    assert os.listdir(tmp_path) == ["jfk.srt"]


def test_failed_render_changes_nothing(tmp_path, monkeypatch) -> None:
    result = golden("jfk.greedy")
    write_result(_without_words(result), "jfk.wav", tmp_path, "all")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(json, "dumps", broken)
    with pytest.raises(RuntimeError):
        write_result(result, "jfk.wav", tmp_path, "all")
    # json is rendered before anything is written: txt, vtt, srt, tsv keep their old content too
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failure_mid_write_keeps_previous_file(tmp_path, monkeypatch, step: str) -> None:
    target = tmp_path / "jfk.vtt"
    target.write_text("WEBVTT\n\nprevious\n", encoding="utf-8")

    def broken(*args, **kwargs):
        raise OSError("device full")

    monkeypatch.setattr(os, step, broken)
    with pytest.raises(OSError, match="device full"):
        write_result(golden("jfk.greedy"), "jfk.wav", tmp_path, "vtt")
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == "WEBVTT\n\nprevious\n"
    assert os.listdir(tmp_path) == ["jfk.vtt"]
