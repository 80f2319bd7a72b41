"""Batch jobs: resumable after a kill, failures reported, a crashing worker isolated, the same job on Ray.

The jobs run the real tiny.en model over short English files of the shared speech, greedy, one torch
thread per worker, so every run (local or Ray, interrupted or not) must give byte-identical outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, REPO, require_shared

from tingxie.batch.inputs import BatchItem, walk_input
from tingxie.batch.job import run_items
from tingxie.batch.local import LocalPool
from tingxie.batch.state import STATE_FILE_NAME
from tingxie.batch.work import WorkSpec
from tingxie.options import build_options

SPEECH = ["jfk.flac", "libri_wizard.flac", "libri_horizon.flac", "libri_1089-134686-0001.flac", "libri_1089-134691-0000.flac",
          "libri_1089-134691-0001.flac", "comfyui_hotword.mp3"]
FORMATS = ("txt", "vtt", "srt", "tsv", "json")
# greedy, no fallback, one thread per worker: fast, and the same numbers whatever the back end
FAST = ["--beam_size", "None", "--best_of", "None", "--temperature_increment_on_fallback", "None", "--threads", "1", "--progress", "False"]
JOB_TIMEOUT_S = 300


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Every process of these jobs (the local workers, the CLI's, the Ray cluster's) runs OpenBLAS on one thread, as
    Ray's actors do (it sets OMP_NUM_THREADS to their CPUs): the log-mel's products round differently with another
    thread count, and the bfloat16 encoder carries those last bits into the scores (the int8 stages' rounding hid
    them), so the outputs would not be byte-identical."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENBLAS_NUM_THREADS", "1")
        yield


def batch_cli(*args: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tingxie", "batch", *args, *FAST], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def outputs_of(folder: Path) -> dict[str, bytes]:
    """Every file in an output folder except the job state, by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != STATE_FILE_NAME}


def expected_names(files: list[str]) -> set[str]:
    return {f"{Path(f).stem}.{ext}" for f in files for ext in FORMATS}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """A folder of seven short English recordings (about 36 s of speech)."""
    require_shared()
    folder = tmp_path_factory.mktemp("speech")
    for name in SPEECH:
        shutil.copy(DATA / "en" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def reference(speech, tmp_path_factory) -> dict[str, bytes]:
    """The outputs of one uninterrupted local job, through the Python API, two workers."""
    import tingxie.batch

    out = tmp_path_factory.mktemp("reference")
    summary = tingxie.batch.run(speech, out, workers=2, threads=1, progress=False, temperature=0.0)
    assert summary.ok and summary.done == len(SPEECH) and summary.skipped == 0, summary.report()
    outputs = outputs_of(out)
    assert set(outputs) == expected_names(SPEECH)
    texts = {name: data.decode() for name, data in outputs.items() if name.endswith(".txt")}
    assert "ask not what your country can do for you" in texts["jfk.txt"]
    assert "distant" in texts["libri_horizon.txt"].lower()
    return outputs


def _recorded_done(state_file: Path) -> bool:
    """Whether the state file, still being appended to, holds a complete 'done' record."""
    try:
        lines = state_file.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return False
    return any(line.endswith("\n") and '"done"' in line for line in lines)


def _done_records(state_file: Path) -> list[dict]:
    lines = [json.loads(line) for line in state_file.read_text().splitlines() if line.strip()]
    return [r for r in lines if r["status"] == "done"]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_job_resumes_and_writes_every_output_once(speech, reference, tmp_path, how):
    out = tmp_path / "out"
    # Ctrl-C's default action for the job even where the suite runs as a shell's background job (SIGINT ignored)
    job = batch_cli(str(speech), "--output_dir", str(out), "--workers", "2", start_new_session=True,
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # a file recorded as done in the job state (its outputs are written before that), not merely its outputs
        wait_for(lambda: _recorded_done(out / STATE_FILE_NAME), JOB_TIMEOUT_S, "the first finished file")
        os.kill(job.pid, getattr(signal, how))  # the driver only: its workers must stop (or finish and exit) on their own
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    if how == "SIGINT":
        assert job.returncode == 130, stderr
        assert "interrupted" in stderr and "run the same command again" in stderr
    else:
        assert job.returncode == -signal.SIGKILL
    # no worker outlives its driver for long: each sees the closed pipe and exits
    wait_for(lambda: not _group_alive(job.pid), 120, "the orphaned workers to exit")
    done_before = len(_done_records(out / STATE_FILE_NAME))
    assert 1 <= done_before < len(SPEECH), "the job was not stopped part-way"

    rerun = batch_cli(str(speech), "--output_dir", str(out), "--workers", "2")
    _, stderr = rerun.communicate(timeout=JOB_TIMEOUT_S)
    assert rerun.returncode == 0, stderr
    assert f"{done_before} already done" in stderr
    assert outputs_of(out) == reference  # every output exactly once (no stray temp files), same bytes
    done = _done_records(out / STATE_FILE_NAME)
    assert sorted(Path(r["path"]).name for r in done) == sorted(SPEECH)  # no file transcribed twice


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies still count as members; only live ones matter
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def test_corrupt_file_fails_with_its_reason_while_the_rest_succeed(speech, reference, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in SPEECH[:2]:
        shutil.copy(speech / name, folder / name)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(3000))
    (folder / "empty.mp3").write_bytes(b"")
    manifest = tmp_path / "job.txt"
    manifest.write_text("\n".join(f"in/{p.name}" for p in sorted(folder.iterdir())) + "\n")
    out = tmp_path / "out"
    job = batch_cli(str(manifest), "--output_dir", str(out), "--workers", "2", "--output_format", "txt")
    _, stderr = job.communicate(timeout=JOB_TIMEOUT_S)
    assert job.returncode == 1, stderr
    failed = [line for line in stderr.splitlines() if line.startswith("tingxie batch: failed: ")]
    assert len(failed) == 2, stderr
    assert any(str(folder / "corrupt.wav") in line and "could not be decoded" in line for line in failed), failed
    assert any(str(folder / "empty.mp3") in line for line in failed), failed
    assert "2 transcribed" in stderr and "2 failed" in stderr
    assert set(outputs_of(out)) == {f"{Path(n).stem}.txt" for n in SPEECH[:2]}
    for name in SPEECH[:2]:
        assert (out / f"{Path(name).stem}.txt").read_bytes() == reference[f"{Path(name).stem}.txt"]
    # undecodable audio is not retried: one attempt each
    records = [json.loads(line) for line in (out / STATE_FILE_NAME).read_text().splitlines()]
    assert {r["path"]: r["attempts"] for r in records if r["status"] == "failed"} == {str(folder / "corrupt.wav"): 1, str(folder / "empty.mp3"): 1}


# ----------------------------------------------------------------- a worker that crashes (no model needed)


class CrashingTranscriber:
    """Stands in for the model: dies on 'crash*' files every time, on 'flaky*' the first time only."""

    def __init__(self, spec: WorkSpec, slot: int | None):
        self.marks = Path(spec.model_dir)

    def __call__(self, path: str) -> dict:
        name = Path(path).stem
        if name.startswith("crash"):
            os._exit(3)
        if name.startswith("flaky") and not (self.marks / name).exists():
            (self.marks / name).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if name.startswith("bad"):
            raise MemoryError("pretend the worker ran out of memory")
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": 1.0, "text": f" {name}", "tokens": [], "temperature": 0.0,
                   "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}
        return {"result": {"text": f" {name}", "segments": [segment], "language": "en"}, "duration": 1.0}


def test_a_crashing_file_is_isolated_and_retried_a_bounded_number_of_times(tmp_path):
    names = ["a.wav", "crash.wav", "flaky.wav", "bad.wav", "b.wav"]
    items = [BatchItem(str(tmp_path / n), 1.0) for n in names]
    spec = WorkSpec(model="fake", model_dir=str(tmp_path))
    pool = LocalPool(spec, 2, factory=CrashingTranscriber)
    summary = run_items(items, pool, tmp_path / "out", spec=spec, output_format="txt", retries=2, progress=False)
    assert summary.done == 3 and not summary.ok
    assert {Path(p).name: reason for p, reason in summary.failed} == {
        "crash.wav": "the worker process died (exit code 3) (after 3 attempts)",
        "bad.wav": "MemoryError: pretend the worker ran out of memory (after 3 attempts)",
    }
    assert summary.workers_lost == 4  # crash three times, flaky once
    assert (tmp_path / "out" / "flaky.txt").read_text() == "flaky\n"
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"a.txt", "b.txt", "flaky.txt", STATE_FILE_NAME}


def test_rerun_skips_done_files_redoes_them_when_an_option_changes_and_survives_a_torn_state_line(tmp_path):
    items = [BatchItem(str(tmp_path / n), 1.0) for n in ("a.wav", "b.wav")]
    out = tmp_path / "out"

    def job(**options) -> object:
        spec = WorkSpec(model="fake", model_dir=str(tmp_path), options=build_options(**options))
        return run_items(items, LocalPool(spec, 1, factory=CrashingTranscriber), out, spec=spec, output_format="txt", progress=False)

    assert (job().done, job().skipped) == (2, 2)
    with (out / STATE_FILE_NAME).open("a") as f:
        f.write('{"path": "torn by a crash')  # a kill -9 mid-write leaves half a line
    (out / ".a.txt.0123456789abcdef0123456789abcdef.tmp").write_text("half")  # and perhaps a writer's temp file
    assert job().skipped == 2
    assert {p.name for p in out.iterdir()} == {"a.txt", "b.txt", STATE_FILE_NAME}
    assert job(language="en").done == 2  # other options: other outputs
    (out / "b.txt").unlink()
    summary = job(language="en")
    assert (summary.done, summary.skipped) == (1, 1)  # an output deleted by hand is made again


def test_inputs_folder_glob_and_manifest_name_the_same_files(speech, tmp_path):
    folder = [i.path for i in walk_input(speech)]
    assert [Path(p).name for p in folder] == sorted(SPEECH)
    assert [i.path for i in walk_input(str(speech / "*.*"))] == folder
    (tmp_path / "m.tsv").write_text("path\tduration\n" + "".join(f"{speech / n}\t1.5\n" for n in sorted(SPEECH)))
    assert [(i.path, i.duration) for i in walk_input(tmp_path / "m.tsv")] == [(p, 1.5) for p in folder]


# ----------------------------------------------------------------- the same job on a real local Ray cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A one-node Ray cluster on 127.0.0.1 with 2 CPUs, started with `ray start --head` and stopped after."""
    port = _free_port()
    temp = Path(f"/tmp/txray{port}")  # Ray's socket paths must stay short
    log = tmp_path_factory.mktemp("ray") / "head.log"
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    assert ray, "the ray command is missing: pip install 'ray==2.60.0' (the batch extra)"
    with log.open("w") as sink:
        head = subprocess.Popen(
            [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for(lambda: "block forever" in log.read_text() or head.poll() is not None, 180, "the Ray head to start")
        assert head.poll() is None, log.read_text()
        yield {"address": f"127.0.0.1:{port}", "head": head}
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its own processes on SIGTERM
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # whatever did not stop in time (the group holds only this cluster)
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _actor_pids(head_pid: int) -> list[int]:
    """The processes of our cluster that run a batch actor (Ray titles them ray::BatchTranscriber)."""
    parents, titles = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                titles[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue

    def under_head(pid: int) -> bool:
        while pid > 1:
            if pid == head_pid:
                return True
            pid = parents.get(pid, 0)
        return False

    return [pid for pid, title in titles.items() if title.startswith("ray::BatchTranscriber") and under_head(pid)]


def test_ray_job_with_two_actors_matches_the_local_run(speech, reference, ray_cluster, tmp_path):
    out = tmp_path / "out"
    job = batch_cli(str(speech), "--output_dir", str(out), "--ray", ray_cluster["address"], "--workers", "2")
    _, stderr = job.communicate(timeout=JOB_TIMEOUT_S)
    assert job.returncode == 0, stderr
    assert outputs_of(out) == reference
    workers = {json.loads(line).get("worker") for line in (out / STATE_FILE_NAME).read_text().splitlines()}
    assert len(workers - {None}) == 2, "both actors should have transcribed files"


def test_ray_actor_killed_mid_job_loses_no_file(speech, reference, ray_cluster, tmp_path):
    out = tmp_path / "out"
    job = batch_cli(str(speech), "--output_dir", str(out), "--ray", ray_cluster["address"], "--workers", "2")
    try:
        wait_for(lambda: out.is_dir() and any(out.glob("*.json")), JOB_TIMEOUT_S, "the first output")
        actors = _actor_pids(ray_cluster["head"].pid)
        assert len(actors) == 2, actors
        os.kill(actors[0], signal.SIGKILL)  # as if its node had gone away
        _, stderr = job.communicate(timeout=JOB_TIMEOUT_S)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode == 0, stderr
    assert "1 worker lost, their files retried" in stderr, stderr
    assert outputs_of(out) == reference
    assert len(_done_records(out / STATE_FILE_NAME)) == len(SPEECH)
