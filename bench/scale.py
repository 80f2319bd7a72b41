"""Batch throughput: audio hours per wall-clock hour for 1 and 2 workers, local processes and Ray actors.

    python bench/scale.py                 # starts a 2-CPU Ray head on 127.0.0.1 for the Ray rows, stops it after
    python bench/scale.py --ray auto      # or use a cluster you started (`ray start --head`)

Each row is a whole `tingxie.batch.run` job (worker start and model load included) over copies of
the shared English recordings, tiny.en, greedy, one torch thread per worker. The Ray overhead ratio
is the local pool's throughput over Ray's at the same number of workers (1.00 = no overhead).
The head started here runs its actors at nice 0 (RAY_worker_niceness=0), as the local workers run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "en"
FILES = ["jfk.flac", "libri_wizard.flac", "libri_horizon.flac", "libri_1089-134686-0000.flac", "libri_1089-134686-0001.flac",
         "libri_1089-134691-0000.flac", "libri_1089-134691-0001.flac", "mit_license_read.flac", "comfyui_hotword.mp3"]


def make_corpus(folder: Path, copies: int) -> None:
    for k in range(copies):
        for name in FILES:
            shutil.copy(DATA / name, folder / f"{Path(name).stem}-{k}{Path(name).suffix}")


def start_head(temp: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = temp / "head.log"
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    with log.open("w") as sink:
        head = subprocess.Popen([ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                                 "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir=/tmp/txbench{port}"],
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                # Ray starts its workers at nice 15; on a CPU shared with other work that alone would
                                # slow the Ray rows, so actors run at the local workers' priority here
                                env={**os.environ, "RAY_worker_niceness": "0"})
    deadline = time.monotonic() + 180
    while "block forever" not in log.read_text():
        if head.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the Ray head did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return head, f"127.0.0.1:{port}"


def stop_head(head: subprocess.Popen) -> None:
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    temp_dir = next(a.split("=", 1)[1] for a in head.args if a.startswith("--temp-dir="))
    shutil.rmtree(temp_dir, ignore_errors=True)


def one_job(corpus: Path, out: Path, workers: int, ray: str | None, model: str) -> tuple[float, float]:
    import tingxie.batch

    summary = tingxie.batch.run(corpus, out, workers=workers, threads=1, ray=ray, model=model, progress=False,
                                temperature=0.0, output_format="json")
    if not summary.ok or summary.done == 0:
        raise SystemExit(summary.report())
    return summary.audio_seconds, summary.wall_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4, help="copies of the 9 recordings (about 80 s of speech each) (default: 4)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration; the fastest counts (default: 1)")
    parser.add_argument("--model", default="tiny.en", help="model (default: tiny.en)")
    parser.add_argument("--ray", default=None, help="an existing cluster's address (default: start a 2-CPU head on 127.0.0.1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tingxie-scale-") as tmp:
        temp = Path(tmp)
        corpus = temp / "corpus"
        corpus.mkdir()
        make_corpus(corpus, args.copies)
        head, address = (None, args.ray) if args.ray else start_head(temp)
        rows: dict[tuple[str, int], tuple[float, float]] = {}
        try:
            # interleaved, best of --repeats: other work on a shared CPU slows some runs, never speeds one up
            for repeat in range(args.repeats):
                for workers in (1, 2):
                    for backend, ray in (("local", None), ("ray", address)):
                        audio, wall = one_job(corpus, temp / f"out-{backend}-{workers}-{repeat}", workers, ray, args.model)
                        print(f"{backend:5}  {workers} worker{'s' if workers > 1 else ' '}  {audio / 3600:.3f} h audio in {wall:6.1f} s  "
                              f"{audio / wall:7.1f} audio hours per hour", flush=True)
                        if (backend, workers) not in rows or wall < rows[backend, workers][1]:
                            rows[backend, workers] = (audio, wall)
        finally:
            if head is not None:
                stop_head(head)
    print(f"best of {args.repeats}; cores here: {os.cpu_count()}; the CPU may be shared with other work: compare rows of one run")
    for workers in (1, 2):
        local, ray = (rows[b, workers][0] / rows[b, workers][1] for b in ("local", "ray"))
        print(f"Ray overhead at {workers} worker{'s' if workers > 1 else ''}: local/Ray throughput = {local / ray:.2f}")
    print(f"scaling 1 -> 2 workers: local x{(rows['local', 2][0] / rows['local', 2][1]) / (rows['local', 1][0] / rows['local', 1][1]):.2f}, "
          f"Ray x{(rows['ray', 2][0] / rows['ray', 2][1]) / (rows['ray', 1][0] / rows['ray', 1][1]):.2f}")


if __name__ == "__main__":
    main()
