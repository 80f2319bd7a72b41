"""The `tingxie` command as other tools call it: real weights, shared speech, bad inputs beside good ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import audio_path, golden, require_shared

REFERENCE_KEYS = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob", "words"}


def tingxie(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-m", "tingxie", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def contract_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The contract command of the core issue, on a flac and an mp3 of the shared speech."""
    require_shared()
    work = tmp_path_factory.mktemp("contract")
    shutil.copy(audio_path("jfk"), work / "A.flac")
    shutil.copy(audio_path("comfyui_hotword"), work / "B.mp3")
    run = tingxie(
        "transcribe", "A.flac", "B.mp3", "--model", "tiny.en", "--language", "en", "--temperature", "0",
        "--word_timestamps", "True", "--compute_type", "default", "--output_format", "json", "--output_dir", "OUT", cwd=work,
    )
    return run, work


def test_contract_writes_one_json_per_file_named_by_stem(contract_run) -> None:
    run, work = contract_run
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (work / "OUT").iterdir()) == ["A.json", "B.json"]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("name,row_id", [("A", "jfk"), ("B", "comfyui_hotword")])
def test_contract_json_has_the_reference_schema_and_text(contract_run, name: str, row_id: str) -> None:
    run, work = contract_run
    result = json.loads((work / "OUT" / f"{name}.json").read_text())
    assert set(result) >= {"text", "segments", "language"} and result["language"] == "en"
    assert result["segments"], "no segments"
    for seg in result["segments"]:
        assert set(seg) >= REFERENCE_KEYS
        assert all(set(w) == {"word", "start", "end", "probability"} for w in seg["words"])
    # the CLI's decoding defaults are the reference CLI's (beam search of 5 at temperature 0); float32 for its exact text
    assert result["text"] == golden(f"{row_id}.beam5")["text"]


def test_verbose_lines_print_each_segment(contract_run) -> None:
    run, _ = contract_run
    assert "[00:00.000 --> " in run.stdout
    assert "ask not what your country can do for you" in run.stdout


def test_bad_inputs_fail_alone_with_specific_reasons(tmp_path: Path) -> None:
    require_shared()
    shutil.copy(audio_path("jfk"), tmp_path / "good.flac")
    (tmp_path / "notes.txt").write_text("This is a text file, not audio.\n" * 20)
    (tmp_path / "empty.wav").write_bytes(b"")
    write_wav(tmp_path / "silence.wav", np.zeros(5 * 16000))
    good = np.frombuffer(subprocess.check_output([sys.executable, "-c", (
        "import sys, tingxie.audio as a; sys.stdout.buffer.write(a.decode_audio(sys.argv[1]).tobytes())"), str(tmp_path / "good.flac")]), np.float32)
    write_wav(tmp_path / "short.wav", good[16000 : 16000 + 1600])  # 0.1 s of real speech
    files = ["notes.txt", "empty.wav", "good.flac", "silence.wav", "short.wav", "missing.flac"]
    run = tingxie("transcribe", *files, "--output_format", "json", "--output_dir", "OUT", "--verbose", "False", cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    reasons = {line.split(": ", 2)[1]: line.split(": ", 2)[2] for line in run.stderr.splitlines() if line.startswith("tingxie: ") and line.count(": ") >= 2}
    assert "not audio" in reasons["notes.txt"] or "could not be decoded as audio" in reasons["notes.txt"]
    assert "empty (0 bytes)" in reasons["empty.wav"]
    assert "no speech detected" in reasons["silence.wav"]
    assert "only 0.10 s long" in reasons["short.wav"]
    assert "no such file" in reasons["missing.flac"]
    assert "good.flac" not in reasons
    text = json.loads((tmp_path / "OUT" / "good.json").read_text())["text"].strip()
    assert text.replace(",", "").startswith("And so my fellow Americans")  # int8 puts commas in places float32 does not
    assert not (tmp_path / "OUT" / "notes.json").exists() and not (tmp_path / "OUT" / "short.json").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--language", "klingon"], "unknown language 'klingon'"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", "/nonexistent/model.pt"], "no checkpoint at /nonexistent/model.pt"),
        (["--temperature", "-1"], "must be >= 0, got (-1.0"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    require_shared()
    shutil.copy(audio_path("jfk"), tmp_path / "a.flac")
    run = tingxie("transcribe", "a.flac", *args, "--output_dir", "OUT", cwd=tmp_path)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "OUT").exists() or not any((tmp_path / "OUT").iterdir())


def _speech_then_silence(path: Path, seconds: int) -> Path:
    """jfk's 11 s of speech, then silence to ``seconds`` (a sparse file: the header declares the full length)."""
    from tingxie.audio import decode_audio

    speech = (decode_audio(audio_path("jfk")) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(speech.tobytes())
    with open(path, "r+b") as f:
        f.seek(40)
        f.write((seconds * 16000 * 2).to_bytes(4, "little"))
        f.seek(4)
        f.write((36 + seconds * 16000 * 2).to_bytes(4, "little"))
        f.truncate(44 + seconds * 16000 * 2)
    return path


def test_an_hour_long_file_is_transcribed_in_the_memory_of_a_short_one(tmp_path: Path) -> None:
    """An hour of audio (the log-mel of all of it computed for its maximum, then read a window at a time) peaks within
    50 MiB of six minutes of the same (issue 24): held whole, its samples and log-mel alone would add 330 MiB."""
    require_shared()
    # the peak of this process's own memory (VmHWM): getrusage's ru_maxrss also counts the parent's peak at the
    # exec, here the test run's, which grows with every model the earlier tests loaded
    probe = (
        "import sys, tingxie.cli as c\n"
        "code = c.main(['transcribe', sys.argv[1], '--output_format', 'txt', '--output_dir', sys.argv[2], '--verbose', 'False', '--progress', 'False',"
        " '--clip_timestamps', '0,20'])\n"
        "peak = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
        "print(code, peak)\n"
    )
    peaks = {}
    for seconds in (360, 3600):
        path = _speech_then_silence(tmp_path / f"{seconds}.wav", seconds)
        out = subprocess.run([sys.executable, "-c", probe, str(path), str(tmp_path / "OUT")], capture_output=True, text=True, timeout=600)
        code, peak_kib = out.stdout.split()
        assert code == "0", out.stderr
        assert "ask not what your country can do for you" in (tmp_path / "OUT" / f"{seconds}.txt").read_text().lower()
        peaks[seconds] = int(peak_kib) / 1024
    assert peaks[3600] - peaks[360] < 50, peaks
