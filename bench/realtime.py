"""Real-time streaming: final-word latency, real-time factor and WER of `tingxie.streaming` on the shared long-form speech.

    python bench/realtime.py --ws                     # what users see: `tingxie serve`, real_concat at real-time pace over
                                                      # /v1/realtime, 1, 2 and 4 streams at once, both commit policies
    python bench/realtime.py                          # in process: tiny.en, real_concat + declaration_tts, simulated clock
    python bench/realtime.py --clock real             # the same, sleeping so audio arrives at wall-clock speed
    python bench/realtime.py --clock steps            # decodes as if free: the latency the commit policy adds by itself
    python bench/realtime.py --files jfk --step 0.5   # other recordings (manifest ids), other settings
    python bench/realtime.py --set policy=local-agreement   # any StreamOptions field

``--ws`` starts `tingxie serve --model tiny.en` with its defaults (add options with --serve-args, or point --url at a
running server), sends 100-ms PCM16 frames on each stream's schedule (frame k leaves when its last sample has been
spoken) and reads every event as it arrives. A final's latency is its arrival minus the audio time its text ends (its
last word's end in the offline pass, matched by text; else the final's own end); first partial: the first partial's
arrival minus the end of the first word. WER of the finals against the reference and against the offline pass of the
same engine (int8 on a CPU, 5 beams, in this process before the streams start); the server's CPU seconds per second
of audio per stream; the largest backlog its lag events reported in each half of the run (a second half above the
first: the backlog grows); the highest degraded level; the server's peak RSS (VmHWM, over the runs so far).

The audio is replayed as a microphone would deliver it: chunks of ``--chunk`` seconds, each available only
once its last sample has been "spoken". With ``--clock simulated`` (the default) the clock advances by
the chunk arrivals and by the *measured* processing time of every call (decoding is real, only the
waiting is skipped: the result is what a single-threaded consumer fed in real time would see, without
the wall-clock wait); ``--clock real`` really waits.

Latency of a word: the clock when it is first emitted in a ``final`` event, minus the moment its audio
ended. Where the word is matched (by text alignment) to tingxie's offline transcript of the same file, its
end is the offline word timestamp (independent of the stream's own timing); otherwise the stream's own.
WER is over a simple normalisation (lower case, punctuation dropped), against the manifest's reference and
against the offline transcript (`model.transcribe` of the float32 model, or with ``--offline same`` of the stream's
own, with the CLI's decoding: 5 beams, best of 5, the temperature fallback; whatever ``--compute_type`` the stream runs).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import re
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEFAULT_FILES = ("real_concat", "declaration_tts")


def normalise(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


def wer(reference: str, hypothesis: str) -> float:
    """Over Whisper's English normaliser (the dev streams' "ten of clubs" and "10 of clubs" are the same words)."""
    import jiwer

    from tingxie.normalizers import normalize

    return jiwer.wer(normalize(reference, "en"), normalize(hypothesis, "en"))


def cer_zh(reference: str, hypothesis: str) -> float:
    """Character error rate of Chinese text: both in Simplified script (Whisper often writes Traditional), no
    punctuation or spaces."""
    import jiwer

    from tingxie.chinese import convert

    def chars(text: str) -> str:
        return "".join(ch for ch in convert(text, "simplified") if ch.isalnum())

    return jiwer.cer(chars(reference), chars(hypothesis))


def scorer(language: str):
    """(score function, its name) for a language: CER in Simplified script for zh, WER otherwise."""
    return (cer_zh, "CER") if language == "zh" else (wer, "WER")


def manifest() -> dict[str, dict[str, str]]:
    """The shared recordings by id: ../shared/data's manifest and extra/'s (paths relative to ../shared/data)."""
    with (DATA / "manifest.tsv").open(newline="", encoding="utf-8") as f:
        rows = {row["id"]: row for row in csv.DictReader(f, delimiter="\t")}
    with (DATA / "extra" / "manifest.tsv").open(newline="", encoding="utf-8") as f:
        rows.update({row["id"]: {**row, "path": f"extra/{row['path']}"} for row in csv.DictReader(f, delimiter="\t")})
    return rows


# Dev streams for tuning (real_concat, built from en/ the same way, is the held-out check): extra/'s English
# utterances of five speakers, alternated so that most utterances start cold after a pause, joined by GAP_S of
# silence; zh_dev: extra/'s twelve AISHELL sentences (the target's four zh/ recordings are the held-out check)
DEV_SETS = {
    "en_dev_a": ("libri_1089-134686-0000", "en_lj001_0001", "en_librivox_sas01_0870", "en_cards_005", "en_lj001_0002",
                 "en_libri_2412-153948-0000", "en_lj001_0003", "en_goforward", "en_lj001_0004", "libri_1089-134691-0000",
                 "en_lj001_0005", "en_librivox_sas01_0880", "en_lj001_0006", "libri_1089-134686-0001", "en_lj001_0007"),
    "en_dev_b": ("en_lj001_0008", "libri_1089-134691-0001", "en_lj001_0009", "en_cards_001", "en_lj001_0010", "en_cards_002",
                 "en_lj001_0011", "en_cards_003", "en_lj001_0012", "en_cards_004", "en_lj001_0013", "en_lj001_0014",
                 "en_lj001_0015", "en_lj001_0016"),
    "zh_dev": tuple(f"zh_aishellsample_BAC009S0150W0{n}" for n in (200, 225, 250, 275, 300, 325, 350, 375, 402, 427, 452, 477)),
}
GAP_S = 1.2  # real_concat's silence between its clips


def load_recording(name: str, rows: dict[str, dict[str, str]]):
    """(16-kHz audio, reference) of a manifest id or of a dev stream (DEV_SETS: its parts joined by GAP_S of silence)."""
    import numpy as np

    from tingxie.audio import decode_audio

    if name not in DEV_SETS:
        return decode_audio(DATA / rows[name]["path"]), rows[name]["reference"]
    gap = np.zeros(int(GAP_S * 16000), dtype=np.float32)
    parts = [decode_audio(DATA / rows[part]["path"]) for part in DEV_SETS[name]]
    audio = np.concatenate([x for part in parts for x in (part, gap)][:-1])
    return audio, " ".join(rows[part]["reference"] for part in DEV_SETS[name])


def replay(model, audio, options, chunk_s: float, clock: str) -> tuple[list[tuple[float, object]], object, float]:
    """Feed ``audio`` chunk by chunk as it 'arrives'; returns [(emission time, event)], the stream's stats, end time."""
    from tingxie.streaming import StreamingTranscriber

    sr = 16000
    stream = StreamingTranscriber(model, options)
    chunk = int(chunk_s * sr)
    emitted: list[tuple[float, object]] = []
    now = 0.0  # seconds since the first sample was spoken
    wall0 = time.perf_counter()
    fed = 0
    while fed < len(audio):
        if clock == "steps":  # every chunk on time, decodes taking no time: how long the policy itself holds words back
            arrived = min(len(audio), fed + chunk)
            emitted += [(arrived / sr, e) for e in stream.accept(audio[fed:arrived])]
            fed = arrived
            continue
        if clock == "real":
            now = time.perf_counter() - wall0
        arrived = min(len(audio), int(now * sr + 1e-6) // chunk * chunk)  # the epsilon: float time never stalls on a boundary
        if arrived <= fed:  # nothing new yet: wait for the next chunk
            wait = (fed + chunk) / sr - now
            if clock == "real":
                time.sleep(max(0.0, wait))
            else:
                now += max(wait, 0.0)
            continue
        started = time.perf_counter()
        events = stream.accept(audio[fed:arrived])
        fed = arrived
        now = time.perf_counter() - wall0 if clock == "real" else now + time.perf_counter() - started
        emitted += [(now, e) for e in events]
    started = time.perf_counter()
    events = stream.finish()
    now = time.perf_counter() - wall0 if clock == "real" else max(now, len(audio) / sr) + (time.perf_counter() - started) * (clock != "steps")
    emitted += [(now, e) for e in events]
    return emitted, stream.stats, now


def word_latencies(emitted, offline_words) -> tuple[list[float], list[float]]:
    """(latencies against offline word ends where matched, latencies against the stream's own word ends)."""
    finals = [(t, w) for t, e in emitted if e.type == "final" for w in e.words]
    stream_keys = [normalise(w.word) for _, w in finals]
    offline_keys = [normalise(w.word) for w in offline_words]
    matcher = difflib.SequenceMatcher(a=stream_keys, b=offline_keys, autojunk=False)
    offline_end = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            offline_end[block.a + k] = offline_words[block.b + k].end
    own = [t - w.end for t, w in finals]
    vs_offline = [t - offline_end.get(i, w.end) for i, (t, w) in enumerate(finals)]
    return vs_offline, own


def differences(offline: str, stream: str) -> str:
    """Where the stream's words differ from the offline pass's: "offline words -> stream words", comma-separated."""
    a, b = normalise(offline).split(), normalise(stream).split()
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return ", ".join(f"{' '.join(a[i1:i2]) or '-'} -> {' '.join(b[j1:j2]) or '-'}" for op, i1, i2, j1, j2 in ops if op != "equal")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ------------------------------------------------------------------------------------------ over the WebSocket


def start_server(model: str, port: int, extra: list[str]):
    """``tingxie serve`` in its own process on 127.0.0.1:port (its defaults, as a user starts it); waits for /health."""
    import subprocess
    import sys

    import httpx

    command = [sys.executable, "-m", "tingxie", "serve", "--model", model, "--port", str(port), "--log-level", "warning", *extra]
    process = subprocess.Popen(command, cwd=REPO)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"tingxie serve exited with status {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("tingxie serve never became healthy")


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds used so far, peak RSS in MiB) of a process, from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return cpu, int(status["VmHWM"].split()[0]) / 1024


async def ws_stream(url: str, audio, frame_s: float, start_at: float) -> list[tuple[float, dict]]:
    """Send ``audio`` as PCM16 frames at real-time pace from ``start_at`` (monotonic), then the end message; returns
    [(arrival in seconds of audio time, i.e. since the first frame was due, message)]."""
    import asyncio
    import json

    import numpy as np
    import websockets

    pcm = (np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
    frame = int(frame_s * 16000) * 2
    received: list[tuple[float, dict]] = []
    async with websockets.connect(url, max_size=None) as ws:

        async def send() -> None:
            for k, i in enumerate(range(0, len(pcm), frame)):
                # each frame leaves once its last sample has been spoken: a microphone's pace, without drift
                await asyncio.sleep(max(0.0, start_at + (k + 1) * frame_s - time.monotonic()))
                await ws.send(pcm[i : i + frame])
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        async for raw in ws:
            message = json.loads(raw)
            received.append((time.monotonic() - start_at, message))
            if message["type"] in ("done", "error"):
                break
        sender.cancel()
    return received


def ws_metrics(messages: list[tuple[float, dict]], offline, duration: float) -> dict:
    """One stream's figures: first-partial latency, final latencies, text, backlog."""
    finals = [(t, m) for t, m in messages if m["type"] == "final"]
    words = [(t, w) for t, m in finals for w in m["words"]]
    offline_words = list(offline.words)
    matcher = difflib.SequenceMatcher(a=[normalise(w["word"]) for _, w in words], b=[normalise(w.word) for w in offline_words], autojunk=False)
    offline_end = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            offline_end[block.a + k] = offline_words[block.b + k].end
    # a final's latency: its arrival minus the audio time its text ends (its last word's offline end where matched)
    latencies, k = [], 0
    for t, m in finals:
        k += len(m["words"])
        latencies.append(t - offline_end.get(k - 1, m["end"]))
    partials = [t for t, m in messages if m["type"] == "partial" and m["text"]]
    first_word_end = offline_words[0].end if offline_words else 0.0
    lags = [(t, m["backlog_s"]) for t, m in messages if m["type"] == "lag"]
    half = duration / 2
    return {
        "first_partial": (partials[0] - first_word_end) if partials else float("nan"),
        "latencies": latencies,
        "text": " ".join(m["text"] for _, m in finals),
        "end": messages[-1][1]["type"] if messages else "none",
        "last_final_after_end": (finals[-1][0] - duration) if finals else float("nan"),
        "backlog_first_half": max([b for t, b in lags if t < half], default=0.0),
        "backlog_second_half": max([b for t, b in lags if t >= half], default=0.0),
        "levels": max([m["level"] for _, m in messages if m["type"] == "lag"], default=0),
    }


def ws_main(args) -> int:
    """Real-time pace over the WebSocket against ``tingxie serve``: 1, 2, 4 streams at once, both policies."""
    import asyncio
    from urllib.parse import urlencode

    from tingxie import load_model

    audio, reference = load_recording(args.files[0], manifest())
    if args.seconds:
        audio, reference = audio[: int(args.seconds * 16000)], None
    duration = len(audio) / 16000
    # the offline pass of the same engine the server streams with (int8 on a CPU), 5 beams as a stream's decodes
    started = time.perf_counter()
    offline = load_model(args.model, device="cpu", compute_type="auto").transcribe(audio, language=args.language, word_timestamps=True, beam_size=5)
    score, metric = scorer(args.language)
    print(f"{args.files[0]} ({duration:.1f} s); offline pass (int8, 5 beams) {time.perf_counter() - started:.1f} s"
          + (f", {metric} vs reference {score(reference, offline.text):.1%}" if reference else ""))
    server = None
    url = args.url
    if url is None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = start_server(args.model, port, args.serve_args.split())
        url = f"ws://127.0.0.1:{port}"
    print(f"server {url} ({'started here: tingxie serve --model ' + args.model + ' ' + args.serve_args if server else 'given'}); "
          f"frames of {args.chunk} s at real-time pace")
    print(f"\n{'policy':16} {'streams':>7} {'1st partial':>11} {'final median':>12} {'p90':>6} {'max':>6} {metric + ' ref':>8} {'vs offline':>10}"
          f" {'CPU RTF':>7} {'backlog 1st/2nd half':>20} {'level':>5} {'peak RSS':>9}")
    try:
        for policy in args.policies:
            for n in args.streams:
                cpu0 = proc_stats(server.pid)[0] if server else 0.0
                query = urlencode({"model": args.model, "language": args.language, "policy": policy})

                async def run_all() -> list:
                    start_at = time.monotonic() + 0.5
                    return await asyncio.gather(*(ws_stream(f"{url}/v1/realtime?{query}", audio, args.chunk, start_at) for _ in range(n)))

                results = [ws_metrics(messages, offline, duration) for messages in asyncio.run(run_all())]
                cpu, rss = proc_stats(server.pid) if server else (float("nan"), float("nan"))
                latencies = [x for r in results for x in r["latencies"]]
                medians = [statistics.median(r["latencies"]) if r["latencies"] else float("nan") for r in results]
                wer_ref = statistics.mean(score(reference, r["text"]) for r in results) if reference else float("nan")
                wer_off = statistics.mean(score(offline.text, r["text"]) for r in results)
                print(f"{policy:16} {n:>7} {statistics.median(r['first_partial'] for r in results):>10.2f}s"
                      f" {statistics.median(latencies) if latencies else float('nan'):>11.2f}s {percentile(latencies, 0.9):>5.2f}s "
                      f"{max(latencies, default=float('nan')):>5.2f}s"
                      f" {wer_ref:>8.1%} {wer_off:>10.1%} {(cpu - cpu0) / (n * duration):>7.2f}"
                      f" {max(r['backlog_first_half'] for r in results):>9.1f}/{max(r['backlog_second_half'] for r in results):<4.1f}s"
                      f" {max(r['levels'] for r in results):>9} {rss:>7.0f}MiB")
                if n > 1:
                    print(f"{'':16} {'':>7} per stream: final median {', '.join(f'{m:.2f}' for m in medians)} s;"
                          f" ends {', '.join(r['end'] for r in results)}")
                else:
                    unlike = f"words unlike the offline pass: {differences(offline.text, results[0]['text']) or 'none'}" if args.language != "zh" else ""
                    ended = "" if results[0]["end"] == "done" else f"the stream ended with {results[0]['end']}"
                    if unlike or ended:
                        print(f"{'':16} {'':>7} {'; '.join(x for x in (unlike, ended) if x)}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    print(f"\n{metric} ref: the finals against the manifest's reference; vs offline: against the offline pass of the same engine"
          f" (offline {metric} vs reference {score(reference, offline.text):.1%}); CPU RTF: the server's CPU seconds per second of audio per stream"
          if reference else "")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="+", default=list(DEFAULT_FILES),
                        help=f"manifest ids (../shared/data and its extra/) or dev streams ({', '.join(DEV_SETS)}) (default: {' '.join(DEFAULT_FILES)})")
    parser.add_argument("--model", default="tiny.en", help="model (default: tiny.en)")
    parser.add_argument("--clock", choices=["simulated", "real", "steps"], default="simulated",
                        help="simulated (measured processing, no waiting), real, or steps (every chunk decoded as if decoding took no "
                             "time: the latency the commit policy adds by itself, the same decodes whatever the machine's load) (default: simulated)")
    parser.add_argument("--chunk", type=float, default=0.1, help="seconds of audio per arriving chunk, as a microphone callback (default: 0.1)")
    parser.add_argument("--step", type=float, default=None, help="StreamOptions.step_s (default: the transcriber's)")
    parser.add_argument("--pause", type=float, default=None, help="StreamOptions.pause_s (default: the transcriber's)")
    parser.add_argument("--max-buffer", dest="max_buffer", type=float, default=None, help="StreamOptions.max_buffer_s (default: the transcriber's)")
    parser.add_argument("--no-vad", action="store_true", help="stream without voice activity detection (default: with)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="any other StreamOptions field, e.g. --set context_s=6 --set beam_size=5 (repeatable; default: none)")
    parser.add_argument("--compute_type", default="auto", choices=["auto", "default", "int8"],
                        help="the stream's model, as `tingxie stream --compute_type`; the offline pass is always float32 (default: auto)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's choice, as `tingxie stream` (default: 0)")
    parser.add_argument("--offline", choices=["float32", "same"], default="float32",
                        help="the offline pass: the float32 model's, or the stream's own model's (default: float32)")
    parser.add_argument("--language", default="en", help="the files' language; zh scores CER in Simplified script instead of WER (default: en)")
    parser.add_argument("--ws", action="store_true",
                        help="real-time pace over the WebSocket against `tingxie serve` (started here unless --url), the first of --files "
                             "(default: the in-process replay)")
    parser.add_argument("--url", default=None, help="with --ws, a running server, e.g. ws://127.0.0.1:8000 (default: start one)")
    parser.add_argument("--serve-args", dest="serve_args", default="",
                        help="with --ws, more `tingxie serve` options for the server started here (default: none)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4], help="with --ws, streams at once, one run each (default: 1 2 4)")
    parser.add_argument("--policies", nargs="+", default=["alignatt", "local-agreement"], help="with --ws, the commit policies (default: both)")
    parser.add_argument("--seconds", type=float, default=None, help="with --ws, stream only the first this many seconds (no reference WER then) (default: all)")
    args = parser.parse_args()
    if args.ws:
        if args.files == list(DEFAULT_FILES):
            args.files = ["real_concat"]  # 84 s: short enough to run both policies at 1, 2 and 4 streams on a shared machine
        return ws_main(args)

    import dataclasses

    import torch

    from tingxie import load_model
    from tingxie.streaming import StreamOptions

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu", compute_type=args.compute_type)
    # the offline transcript (word ends for latency, WER baseline) is the reference-identical float32 pass
    offline_model = model if args.compute_type == "default" or args.offline == "same" else load_model(args.model, device="cpu")
    overrides = {"step_s": args.step, "pause_s": args.pause, "max_buffer_s": args.max_buffer}
    defaults = StreamOptions()
    for setting in args.settings:
        name, _, value = setting.partition("=")
        if not hasattr(defaults, name):
            parser.error(f"--set {setting}: StreamOptions has no field {name!r}")
        current = getattr(defaults, name)
        if value == "None":
            overrides[name] = None
        elif isinstance(current, bool):
            overrides[name] = value.lower() in ("1", "true", "yes")
        else:
            overrides[name] = type(current)(value) if current is not None else (int(value) if value.isdigit() else float(value))
    options = dataclasses.replace(StreamOptions(language=args.language), vad=not args.no_vad, **{k: v for k, v in overrides.items() if v is not None})
    rows = manifest()
    print(f"model {args.model} (compute_type {args.compute_type}), torch threads {torch.get_num_threads()}, clock {args.clock}, chunks of {args.chunk} s, "
          f"{options}")

    score, metric = scorer(args.language)
    all_vs_offline, all_own, total_audio, total_decode = [], [], 0.0, 0.0
    ref_all, stream_all, offline_all = [], [], []
    for file_id in args.files:
        audio, reference = load_recording(file_id, rows)
        duration = len(audio) / 16000
        started = time.perf_counter()
        # the CLI's decoding (5 beams, best of 5, the temperature fallback): the offline pass users compare with
        offline = offline_model.transcribe(audio, language=args.language, word_timestamps=True, beam_size=5, best_of=5)
        offline_seconds = time.perf_counter() - started
        emitted, stats, end = replay(model, audio, options, args.chunk, args.clock)
        text = " ".join(e.text for _, e in emitted if e.type == "final")
        vs_offline, own = word_latencies(emitted, offline.words)
        all_vs_offline += vs_offline
        all_own += own
        total_audio += duration
        total_decode += stats.decode_seconds
        ref_all.append(reference)
        stream_all.append(text)
        offline_all.append(offline.text)
        print(f"\n{file_id} ({duration:.1f} s): {len(vs_offline)} final words, {stats.decodes} decodes, longest buffer {stats.longest_buffer_seconds:.1f} s")
        print(f"  final latency vs offline word ends: median {statistics.median(vs_offline):.2f} s, p90 {percentile(vs_offline, 0.9):.2f} s;"
              f" vs the stream's own word ends: median {statistics.median(own):.2f} s, p90 {percentile(own, 0.9):.2f} s")
        print(f"  real-time factor {stats.decode_seconds / duration:.2f} (decoding {stats.decode_seconds:.1f} s; offline transcribe {offline_seconds:.1f} s);"
              f" last final {end - duration:.2f} s after the audio ended")
        print(f"  {metric} stream vs reference {score(reference, text):.1%}, offline vs reference {score(reference, offline.text):.1%},"
              f" stream vs offline {score(offline.text, text):.1%}")
        if args.language != "zh":
            print(f"  words unlike the offline pass: {differences(offline.text, text) or 'none'}")

    print("\nALL FILES")
    print(f"  final latency: median {statistics.median(all_vs_offline):.2f} s, p90 {percentile(all_vs_offline, 0.9):.2f} s (vs offline word ends);"
          f" median {statistics.median(all_own):.2f} s, p90 {percentile(all_own, 0.9):.2f} s (vs the stream's own)")
    print(f"  real-time factor {total_decode / total_audio:.2f} ({'keeps up' if total_decode < total_audio else 'FALLS BEHIND'})")
    ref, stream, off = " ".join(ref_all), " ".join(stream_all), " ".join(offline_all)
    print(f"  {metric} vs reference: stream {score(ref, stream):.1%}, offline {score(ref, off):.1%} (difference "
          f"{100 * (score(ref, stream) - score(ref, off)):+.1f} points);"
          f" stream vs offline {score(off, stream):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
