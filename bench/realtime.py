"""Real-time streaming: final-word latency, real-time factor and WER of `tingxie.streaming` on the shared long-form speech.

    python bench/realtime.py                          # tiny.en, real_concat + declaration_tts, simulated clock
    python bench/realtime.py --clock real             # the same, sleeping so audio arrives at wall-clock speed
    python bench/realtime.py --files jfk --step 0.5   # other recordings (manifest ids), other settings

The audio is replayed as a microphone would deliver it: chunks of ``--chunk`` seconds, each available only
once its last sample has been "spoken". With ``--clock simulated`` (the default) the clock advances by
the chunk arrivals and by the *measured* processing time of every call (decoding is real, only the
waiting is skipped: the result is what a single-threaded consumer fed in real time would see, without
the wall-clock wait); ``--clock real`` really waits.

Latency of a word: the clock when it is first emitted in a ``final`` event, minus the moment its audio
ended. Where the word is matched (by text alignment) to tingxie's offline transcript of the same file, its
end is the offline word timestamp (independent of the stream's own timing); otherwise the stream's own.
WER is over a simple normalisation (lower case, punctuation dropped), against the manifest's reference and
against the offline transcript (`model.transcribe` of the float32 model, greedy with temperature fallback, as the
API's default: the reference-identical pass, whatever ``--compute_type`` the stream runs).
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
    import jiwer

    return jiwer.wer(normalise(reference), normalise(hypothesis))


def manifest() -> dict[str, dict[str, str]]:
    with (DATA / "manifest.tsv").open(newline="", encoding="utf-8") as f:
        return {row["id"]: row for row in csv.DictReader(f, delimiter="\t")}


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
    now = time.perf_counter() - wall0 if clock == "real" else max(now, len(audio) / sr) + time.perf_counter() - started
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help=f"manifest ids (default: {' '.join(DEFAULT_FILES)})")
    parser.add_argument("--model", default="tiny.en", help="model (default: tiny.en)")
    parser.add_argument("--clock", choices=["simulated", "real"], default="simulated", help="simulated (measured processing, no waiting) or real (default: simulated)")
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
    args = parser.parse_args()

    import dataclasses

    import torch

    from tingxie import load_model
    from tingxie.audio import decode_audio
    from tingxie.streaming import StreamOptions

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu", compute_type=args.compute_type)
    # the offline transcript (word ends for latency, WER baseline) is the reference-identical float32 pass
    offline_model = model if args.compute_type == "default" else load_model(args.model, device="cpu")
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
            overrides[name] = type(current)(value) if current is not None else int(value)
    options = dataclasses.replace(StreamOptions(language="en"), vad=not args.no_vad, **{k: v for k, v in overrides.items() if v is not None})
    rows = manifest()
    print(f"model {args.model} (compute_type {args.compute_type}), torch threads {torch.get_num_threads()}, clock {args.clock}, chunks of {args.chunk} s, {options}")

    all_vs_offline, all_own, total_audio, total_decode = [], [], 0.0, 0.0
    ref_all, stream_all, offline_all = [], [], []
    for file_id in args.files:
        row = rows[file_id]
        audio = decode_audio(DATA / row["path"])
        duration = len(audio) / 16000
        started = time.perf_counter()
        offline = offline_model.transcribe(audio, language="en", word_timestamps=True)
        offline_seconds = time.perf_counter() - started
        emitted, stats, end = replay(model, audio, options, args.chunk, args.clock)
        text = " ".join(e.text for _, e in emitted if e.type == "final")
        vs_offline, own = word_latencies(emitted, offline.words)
        all_vs_offline += vs_offline
        all_own += own
        total_audio += duration
        total_decode += stats.decode_seconds
        ref_all.append(row["reference"])
        stream_all.append(text)
        offline_all.append(offline.text)
        print(f"\n{file_id} ({duration:.1f} s): {len(vs_offline)} final words, {stats.decodes} decodes, longest buffer {stats.longest_buffer_seconds:.1f} s")
        print(f"  final latency vs offline word ends: median {statistics.median(vs_offline):.2f} s, p90 {percentile(vs_offline, 0.9):.2f} s;"
              f" vs the stream's own word ends: median {statistics.median(own):.2f} s, p90 {percentile(own, 0.9):.2f} s")
        print(f"  real-time factor {stats.decode_seconds / duration:.2f} (decoding {stats.decode_seconds:.1f} s; offline transcribe {offline_seconds:.1f} s);"
              f" last final {end - duration:.2f} s after the audio ended")
        print(f"  WER stream vs reference {wer(row['reference'], text):.1%}, offline vs reference {wer(row['reference'], offline.text):.1%},"
              f" stream vs offline {wer(offline.text, text):.1%}")

    print("\nALL FILES")
    print(f"  final latency: median {statistics.median(all_vs_offline):.2f} s, p90 {percentile(all_vs_offline, 0.9):.2f} s (vs offline word ends);"
          f" median {statistics.median(all_own):.2f} s, p90 {percentile(all_own, 0.9):.2f} s (vs the stream's own)")
    print(f"  real-time factor {total_decode / total_audio:.2f} ({'keeps up' if total_decode < total_audio else 'FALLS BEHIND'})")
    ref, stream, off = " ".join(ref_all), " ".join(stream_all), " ".join(offline_all)
    print(f"  WER vs reference: stream {wer(ref, stream):.1%}, offline {wer(ref, off):.1%} (difference {100 * (wer(ref, stream) - wer(ref, off)):+.1f} points);"
          f" stream vs offline {wer(off, stream):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
