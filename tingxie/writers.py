"""Output files of a transcription (txt, vtt, srt, tsv, json) in the reference implementation's formats.

Every function takes the result as a plain dict in the reference schema (``{"text", "language",
"segments": [...]}``, segments optionally carrying ``"words"``). Rendering is pure; ``write_result``
writes each file atomically so a crash never leaves a half-written transcript behind.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OptionError

# without a limit the reference uses this many characters / words per line, i.e. effectively none
_NO_LIMIT = 1000
# a gap this long (seconds) between two words starts a new subtitle when lines are regrouped
_LONG_PAUSE = 3.0


@dataclass(frozen=True)
class SubtitleOptions:
    """How srt/vtt cues are built from word timings; every field is ignored for results without words.

    Behaviour follows the reference exactly, including its quirks:

    * ``max_line_width`` regroups words into lines of at most that many characters (a single longer
      word gets a line of its own). Without ``max_line_count`` a cue never spans two segments.
    * ``max_line_count`` only has an effect together with ``max_line_width``; then cues may cross
      segment boundaries, and a pause over 3 s between words starts a new cue.
    * ``max_words_per_line`` splits each segment into runs of at most that many words, each run
      starting a new cue; once both ``max_line_width`` and ``max_line_count`` are set it has no effect.
    * ``highlight_words`` repeats each cue once per word with that word in ``<u>…</u>``.
    """

    max_line_width: int | None = None
    max_line_count: int | None = None
    highlight_words: bool = False
    max_words_per_line: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_line_width", "max_line_count", "max_words_per_line"):
            value = getattr(self, name)
            if value is None:
                continue
            # bool is an int subclass; True as a width is surely a mistake
            if isinstance(value, bool) or not isinstance(value, int):
                raise OptionError(f"{name} must be a positive integer or None, got {value!r}")
            if value <= 0:
                raise OptionError(f"{name} must be a positive integer, got {value}")
        if not isinstance(self.highlight_words, bool):
            raise OptionError(f"highlight_words must be True or False, got {self.highlight_words!r}")


def format_timestamp(seconds: float, always_include_hours: bool = False, decimal_marker: str = ".") -> str:
    """``[HH:]MM:SS<marker>mmm`` rounded to the millisecond; hours appear when non-zero or forced."""
    if not seconds >= 0:
        raise ValueError(f"non-negative timestamp expected, got {seconds!r}")
    total_ms = round(seconds * 1000.0)
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    prefix = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{prefix}{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


@dataclass(frozen=True)
class _Cue:
    """One subtitle: times in seconds and its (possibly multi-line) text."""

    start: float
    end: float
    text: str
    speaker: str | None = None  # from diarization


def _first_word_start(segments: list[dict]) -> float:
    for segment in segments:
        for word in segment.get("words") or ():
            return word["start"]
    return segments[0]["start"] if segments else 0.0


def _word_groups(segments: list[dict], options: SubtitleOptions) -> Iterator[list[dict]]:
    """The words of each subtitle, in order; a word's text starts with "\\n" where a line breaks."""
    # the reference regroups freely only when both line limits are given; otherwise segments stay cues
    keep_segments = options.max_line_count is None or options.max_line_width is None
    width = options.max_line_width or _NO_LIMIT
    run_length = options.max_words_per_line or _NO_LIMIT
    max_lines = options.max_line_count

    current: list[dict] = []
    line_len = 0
    line_count = 1
    previous_start = _first_word_start(segments) or 0.0
    for segment in segments:
        words = segment.get("words") or []
        for run_begin in range(0, len(words), run_length):
            for index_in_run, original in enumerate(words[run_begin : run_begin + run_length]):
                word = dict(original)
                text = word["word"]
                long_pause = not keep_segments and word["start"] - previous_start > _LONG_PAUSE
                fits = line_len + len(text) <= width
                # each run of max_words_per_line words (or each segment) opens a new cue
                run_break = keep_segments and index_in_run == 0 and bool(current)
                run_break = run_break or (bool(current) and word.get("speaker") != current[-1].get("speaker"))  # one voice a cue
                if line_len > 0 and fits and not long_pause and not run_break:
                    line_len += len(text)
                else:
                    text = text.strip()
                    full = max_lines is not None and (long_pause or line_count >= max_lines)
                    if run_break or (current and full):
                        yield current
                        current = []
                        line_count = 1
                    elif line_len > 0:
                        line_count += 1
                        text = "\n" + text
                    line_len = len(text.strip())
                    word["word"] = text
                current.append(word)
                previous_start = word["start"]
    if current:
        yield current


# a word's leading whitespace (a space or a line break) stays outside the underline
_LEADING_SPACE = re.compile(r"^(\s*)(.*)$")


def _underline(text: str) -> str:
    return _LEADING_SPACE.sub(r"\1<u>\2</u>", text)


def _ms(seconds: float) -> int:
    # cue times are compared as the reference compares them: after rounding to the millisecond
    return round(seconds * 1000.0)


def _highlighted(group: list[dict]) -> Iterator[_Cue]:
    """One cue per word with that word underlined; a gap before a word repeats the plain text."""
    texts = [w["word"] for w in group]
    plain = "".join(texts)
    last_end = group[0]["start"]
    for i, word in enumerate(group):
        if _ms(last_end) != _ms(word["start"]):
            yield _Cue(last_end, word["start"], plain)
        text = "".join(_underline(t) if j == i else t for j, t in enumerate(texts))
        yield _Cue(word["start"], word["end"], text)
        last_end = word["end"]


def _cues(result: dict, options: SubtitleOptions) -> Iterator[_Cue]:
    """The subtitles of a result: regrouped word timings when there are any, else one per segment."""
    segments = result.get("segments") or []
    if segments and "words" in segments[0]:
        for group in _word_groups(segments, options):
            speaker = group[0].get("speaker")
            if options.highlight_words:
                yield from (_Cue(c.start, c.end, c.text, speaker) for c in _highlighted(group))
            else:
                yield _Cue(group[0]["start"], group[-1]["end"], "".join(w["word"] for w in group), speaker)
    else:
        for segment in segments:
            # "-->" would end the cue's timing line early in a subtitle reader
            yield _Cue(segment["start"], segment["end"], segment["text"].strip().replace("-->", "->"), segment.get("speaker"))


def _speaker_prefix(speaker: str | None, template: str) -> str:
    return template.format(speaker) if speaker is not None else ""


def _render_txt(result: dict, options: SubtitleOptions) -> str:
    return "".join(_speaker_prefix(segment.get("speaker"), "{}: ") + segment["text"].strip() + "\n" for segment in result.get("segments") or [])


def _render_vtt(result: dict, options: SubtitleOptions) -> str:
    parts = ["WEBVTT\n\n"]
    for cue in _cues(result, options):
        # WebVTT's voice tag names the speaker of a diarized cue
        parts.append(f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}\n{_speaker_prefix(cue.speaker, '<v {}>')}{cue.text}\n\n")
    return "".join(parts)


def _render_srt(result: dict, options: SubtitleOptions) -> str:
    parts = []
    for number, cue in enumerate(_cues(result, options), start=1):
        start = format_timestamp(cue.start, always_include_hours=True, decimal_marker=",")
        end = format_timestamp(cue.end, always_include_hours=True, decimal_marker=",")
        parts.append(f"{number}\n{start} --> {end}\n{_speaker_prefix(cue.speaker, '[{}] ')}{cue.text}\n\n")
    return "".join(parts)


def _render_tsv(result: dict, options: SubtitleOptions) -> str:
    # integer milliseconds: no locale can turn the decimal point into a comma
    segments = result.get("segments") or []
    diarized = any("speaker" in segment for segment in segments)  # a speaker column only for a diarized result
    lines = ["start\tend\tspeaker\ttext\n" if diarized else "start\tend\ttext\n"]
    for segment in segments:
        text = segment["text"].strip().replace("\t", " ")
        speaker = f"{segment.get('speaker') or ''}\t" if diarized else ""
        lines.append(f"{round(1000 * segment['start'])}\t{round(1000 * segment['end'])}\t{speaker}{text}\n")
    return "".join(lines)


def _render_json(result: dict, options: SubtitleOptions) -> str:
    # The reference uses json.dump's default ensure_ascii=True; we keep non-ASCII text readable
    # (ensure_ascii=False). Both parse to the same dict. Only text that UTF-8 cannot encode (lone
    # surrogates) would not round-trip through the file, so that falls back to escaping.
    text = json.dumps(result, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(result, ensure_ascii=True)
    return text


# The one registry of output files: the CLI's --output_format, batch jobs, the server's downloads and the page read it.
# In the order 'all' writes them, as the reference does.
_RENDERERS: dict[str, Callable[[dict, SubtitleOptions], str]] = {
    "txt": _render_txt,
    "vtt": _render_vtt,
    "srt": _render_srt,
    "tsv": _render_tsv,
    "json": _render_json,
}
OUTPUT_FORMATS: tuple[str, ...] = tuple(_RENDERERS)
FORMATS: tuple[str, ...] = (*OUTPUT_FORMATS, "all")  # what --output_format takes


def _as_dict(result: Any) -> dict:
    # a typed TranscriptionResult is accepted too, as its reference-schema dict
    return result.to_dict() if hasattr(result, "to_dict") else result


def render(result: dict, fmt: str, options: SubtitleOptions = SubtitleOptions()) -> str:
    """The text of one output format (``txt``, ``vtt``, ``srt``, ``tsv`` or ``json``) for ``result``."""
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        hint = " ('all' names several files: use write_result)" if fmt == "all" else ""
        raise OptionError(f"unknown output format {fmt!r}{hint}; expected one of {', '.join(OUTPUT_FORMATS)}")
    return renderer(_as_dict(result), options)


def _fsync_dir(directory: Path) -> None:
    # makes the rename itself durable; not possible everywhere (e.g. Windows), so best effort
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) all at once: temp file beside it, fsync, rename."""
    data = text.encode("utf-8")
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as a plain open() would
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_result(
    result: dict,
    audio_path: str | Path,
    output_dir: str | Path,
    fmt: str,
    options: SubtitleOptions = SubtitleOptions(),
) -> list[Path]:
    """Write ``<output_dir>/<audio stem>.<ext>`` for ``fmt`` (all five for ``'all'``); returns the paths.

    Every file is rendered before any is written, and each is replaced atomically, so a failure
    leaves earlier versions of the files intact and no temporary files behind.
    """
    if fmt not in FORMATS:
        raise OptionError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
    stem = Path(audio_path).stem
    if not stem:
        raise OptionError(f"cannot name output files after {str(audio_path)!r}")
    formats = OUTPUT_FORMATS if fmt == "all" else (fmt,)
    result = _as_dict(result)
    rendered = [(f, render(result, f, options)) for f in formats]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for f, text in rendered:
        path = out / f"{stem}.{f}"
        _write_atomic(path, text)
        paths.append(path)
    return paths
