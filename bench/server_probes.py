"""Issue 24's probes against ``tingxie serve`` with its defaults (greedy decoding), timed: how fast each is answered,
the slowest /health answer meanwhile, the server's peak memory, how soon a client that leaves frees its worker,
and how soon SIGTERM ends a running job. The tests (tests/test_server_security.py) assert the outcomes; this prints
the times, which tests never assert.

    python bench/server_probes.py [--only health]

``--only health``: only /health's latency on the idle server and throughout a 10-minute transcription (the upload
read window by window), with the server's peak memory.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_server_security import (  # noqa: E402  (tests/ is put on sys.path above)
    flac_bytes,
    lying_flac_bomb,
    one_hz_wav_bomb,
    peak_rss_mb,
    ten_hour_silent_flac,
)
from test_server_support import ServerProcess  # noqa: E402


def timed_with_health(server: ServerProcess, send) -> tuple[httpx.Response, float, float, int]:
    """(answer, seconds to answer, slowest /health in ms, /health polls) for ``send()`` run on a thread."""
    answer: dict = {}
    started = time.perf_counter()
    work = threading.Thread(target=lambda: answer.setdefault("r", send()))
    work.start()
    slowest, polls = 0.0, 0
    while work.is_alive():
        t = time.perf_counter()
        httpx.get(f"{server.url}/health", timeout=30)
        slowest, polls = max(slowest, time.perf_counter() - t), polls + 1
        time.sleep(0.05)
    work.join()
    return answer["r"], answer.setdefault("t", time.perf_counter() - started), slowest * 1000, polls


def health_during(server: ServerProcess, send) -> tuple[httpx.Response, float, list[float]]:
    """(answer, seconds to answer, every /health latency in ms) for ``send()`` run on a thread."""
    answer: dict = {}
    started = time.perf_counter()
    work = threading.Thread(target=lambda: answer.setdefault("r", send()))
    work.start()
    latencies = []
    while work.is_alive():
        t = time.perf_counter()
        httpx.get(f"{server.url}/health", timeout=30)
        latencies.append((time.perf_counter() - t) * 1000)
        time.sleep(0.05)
    work.join()
    return answer["r"], time.perf_counter() - started, latencies


def main() -> None:
    import argparse
    import tempfile

    from tingxie.audio import decode_audio

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["health"], help="run only this probe")
    only = parser.parse_args().only
    tmp = Path(tempfile.mkdtemp(prefix="tingxie-probes-"))
    server = ServerProcess("--beam-size", "None", "--best-of", "None", tmpdir=tmp)
    server.wait_healthy()

    def post(data, name, route="/v1/audio/transcriptions", **fields):
        return httpx.post(f"{server.url}{route}", files={"file": (name, data)}, data=fields, timeout=600)

    idle = []
    for _ in range(20):
        t = time.perf_counter()
        httpx.get(f"{server.url}/health", timeout=30)
        idle.append(time.perf_counter() - t)
        time.sleep(0.05)
    print(f"{'/health on the idle server':38}: median {np.median(idle) * 1000:6.1f} ms, slowest {max(idle) * 1000:6.1f} ms of 20", flush=True)
    speech = decode_audio(REPO.parent / "shared" / "data" / "en" / "real_concat.flac")
    ten_minutes = flac_bytes(np.tile((speech * 32767).astype(np.int16), 8)[: 600 * 16000], 16000)
    response, seconds, latencies = health_during(server, lambda: post(ten_minutes, "long.flac"))
    print(f"{'/health during a 10-min transcription':38}: {response.status_code} in {seconds:5.1f} s; /health median "
          f"{np.median(latencies):6.1f} ms, 99th percentile {np.percentile(latencies, 99):6.1f} ms, slowest {max(latencies):6.1f} ms of "
          f"{len(latencies)} ({sum(v > 200 for v in latencies)} over 200 ms); peak RSS {peak_rss_mb(server.proc.pid):6.0f} MB", flush=True)
    if only == "health":
        server.kill()
        return
    probes = [
        ("1-Hz WAV, 27.8 h declared", lambda: post(one_hz_wav_bomb(), "bomb.wav")),
        ("FLAC, 10 h of silence", lambda: post(ten_hour_silent_flac(), "silence.flac")),
        ("FLAC declaring 1 s, holding 27.8 h", lambda: post(lying_flac_bomb(), "liar.flac")),
        ("practice, the same lying FLAC", lambda: post(lying_flac_bomb(), "liar.flac", "/v1/practice", text="hello")),
    ]
    for label, send in probes:
        response, seconds, slowest, polls = timed_with_health(server, send)
        print(f"{label:38}: {response.status_code} in {seconds:5.2f} s; slowest /health {slowest:6.1f} ms of {polls}; "
              f"peak RSS so far {peak_rss_mb(server.proc.pid):6.0f} MB", flush=True)

    try:
        post_timeout = httpx.Timeout(60, read=3)
        httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": ("long.flac", ten_minutes)}, timeout=post_timeout)
    except httpx.ReadTimeout:
        left = time.perf_counter()
    while httpx.get(f"{server.url}/health", timeout=30).json()["queue"]["admitted"]:
        time.sleep(0.02)
    print(f"{'client left 3 s into a 10-min job':38}: worker free {time.perf_counter() - left:5.2f} s later", flush=True)

    job = threading.Thread(target=lambda: _quiet(lambda: post(ten_minutes, "long.flac")))
    job.start()
    while not httpx.get(f"{server.url}/health", timeout=30).json()["queue"]["admitted"]:
        time.sleep(0.02)
    time.sleep(3.0)
    signalled = time.perf_counter()
    server.proc.send_signal(15)
    server.proc.wait(600)
    print(f"{'SIGTERM 3 s into a 10-min job':38}: exited {time.perf_counter() - signalled:5.2f} s later "
          f"(grace {20} s by default)", flush=True)
    job.join(60)


def _quiet(fn) -> None:
    try:
        fn()
    except httpx.TransportError:
        pass


if __name__ == "__main__":
    main()
