"""Terminal manners of the CLI, as a user meets them: progress bars only on a terminal or with --progress, never
mixed into the segment lines; --quiet; NO_COLOR; and ``tingxie demo``'s output on real human speech."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

from conftest import REPO, audio_path

from tingxie.cli.commands import SAMPLE_TEXT, sample_path
from tingxie.normalizers import english_normalize

_SEGMENT = re.compile(r"^\[(\d\d:)?\d\d:\d\d\.\d\d\d --> (\d\d:)?\d\d:\d\d\.\d\d\d\] +\S")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI with stdout and stderr as pipes (no terminal), as in a log or a script."""
    return subprocess.run([sys.executable, "-m", "tingxie", *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def _on_terminal(*args: str, env: dict | None = None) -> str:
    """The CLI with stdout and stderr on one pseudo-terminal: everything it wrote, as the terminal received it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal's size (a new pty has none)
    process = subprocess.Popen([sys.executable, "-m", "tingxie", *args], cwd=REPO, stdin=subprocess.DEVNULL, stdout=follower,
                               stderr=follower, env={**os.environ, "TERM": "xterm", **(env or {})})
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 600)
        if not ready:
            process.kill()
            raise TimeoutError(" ".join(args))
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode("utf-8", errors="replace")


def _rendered_lines(raw: str) -> list[str]:
    """What a terminal shows once output ends: per line, a carriage return goes back to its start and later text
    overwrites earlier text; ANSI control sequences are dropped."""
    lines = []
    for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw).replace("\r\n", "\n").split("\n"):
        shown: list[str] = []
        for piece in line.split("\r"):
            shown[: len(piece)] = piece
        lines.append("".join(shown).rstrip())
    return lines


def test_no_progress_bar_when_output_goes_to_a_file_or_pipe(tmp_path):
    run = _cli("transcribe", str(audio_path("jfk")), "--output_format", "txt", "--output_dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines and all(_SEGMENT.match(line) for line in lines), run.stdout
    assert "jfk.flac" not in run.stderr and "|" not in run.stderr and "\r" not in run.stderr, run.stderr


def test_progress_bar_on_a_terminal_never_mixes_with_the_segment_lines(tmp_path):
    # 84 s of speech with beam search (the default): long enough that the bar is drawn (after 0.5 s) on any machine
    raw = _on_terminal("transcribe", str(audio_path("real_concat")), "--output_format", "txt", "--output_dir", str(tmp_path),
                       "--progress", "True")
    assert "real_concat.flac:" in raw, raw[-2000:]  # the bar was drawn
    shown = [line for line in _rendered_lines(raw) if line.strip()]
    segments = [line for line in shown if line.startswith("[")]
    assert len(segments) >= 6, shown
    assert all(_SEGMENT.match(line) and "real_concat.flac:" not in line and "|" not in line for line in segments), segments
    assert not [line for line in shown if "real_concat.flac:" in line], shown  # the bar is cleared when the file is done


def test_quiet_prints_nothing_and_still_writes_the_outputs(tmp_path):
    run = _cli("transcribe", str(audio_path("jfk")), "--output_format", "txt", "--output_dir", str(tmp_path), "--quiet")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""
    assert "ask not what your country can do for you" in (tmp_path / "jfk.txt").read_text(encoding="utf-8").lower()


def test_demo_on_a_terminal_uses_colour_unless_no_color_is_set():
    coloured = _on_terminal("demo", env={"NO_COLOR": ""})
    assert "\x1b[1m" in coloured
    plain = _on_terminal("demo", env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain, plain
    assert "word for word what the reader said" in plain


def test_demo_transcribes_the_bundled_human_speech_word_for_word():
    run = _cli("demo")
    assert run.returncode == 0, run.stderr
    assert "\x1b[" not in run.stdout  # no terminal: no colour
    segments = [line for line in run.stdout.splitlines() if _SEGMENT.match(line)]
    assert len(segments) >= 2
    text = " ".join(line.split("] ", 1)[1] for line in segments)
    assert english_normalize(text) == english_normalize(SAMPLE_TEXT), text
    assert re.search(r"real-time factor \d\.\d{3}", run.stdout)
    assert "word for word what the reader said" in run.stdout
    assert sample_path().is_file() and sample_path().stat().st_size < 300_000


class _TerminalText(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_partial_lines_are_grey_on_a_terminal_unless_no_color(monkeypatch):
    from tingxie.streaming.console import LinePrinter
    from tingxie.streaming.events import StreamEvent

    partial = StreamEvent(type="partial", text="ask not what")
    for no_color, grey in (("", True), ("1", False)):
        monkeypatch.setenv("NO_COLOR", no_color)
        monkeypatch.setenv("TERM", "xterm")
        out = _TerminalText()
        LinePrinter(out, partials=True, timestamps=False).show(partial)
        assert "ask not what" in out.getvalue()
        assert ("\x1b[90m" in out.getvalue()) is grey, repr(out.getvalue())
