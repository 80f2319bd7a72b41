"""Peak memory against audio length: a 10-minute and a 3-hour recording side by side (issue 24's target: the
3-hour file within 50 MiB of the 10-minute one's peak).

Both files are real speech from ../shared (real_concat, tiled) encoded as FLAC in a temporary folder. For each,
in a fresh process, it measures the peak resident memory (VmHWM) of
  - stream:     ``tingxie.audio.iter_audio`` reading the file in 30-s chunks (the bounded decoder), and
  - cli:        ``tingxie transcribe`` with its defaults on the first ``--clip`` seconds (``--clip_timestamps``):
                the whole file is still read once (its log-mel's maximum, tingxie.mel_source) before the first
                window, so the peak covers all of the file's decoding.
and prints the peaks and the 3-hour minus 10-minute difference.

    python bench/long_memory.py [--hours 3] [--clip 120]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

STREAM_PROBE = """
import sys
from tingxie.audio import iter_audio
samples = sum(chunk.size for chunk in iter_audio(sys.argv[1]))
peak = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:'))
print(samples / 16000, peak)
"""

CLI_PROBE = """
import sys, tingxie.cli as c
code = c.main(['transcribe', sys.argv[1], '--clip_timestamps', '0,' + sys.argv[3], '--output_format', 'txt',
               '--output_dir', sys.argv[2], '--verbose', 'False', '--progress', 'False'])
peak = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:'))
print(code, peak)
"""


def write_speech(path: Path, seconds: int) -> None:
    """``seconds`` of real speech (real_concat repeated) as 16 kHz mono FLAC, encoded a minute at a time."""
    import av

    from tingxie.audio import decode_audio

    speech = (decode_audio(SHARED / "en" / "real_concat.flac") * 32767).astype(np.int16)
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=16000)
        stream.layout = "mono"
        written = 0
        while written < seconds * 16000:
            piece = speech[: min(speech.size, seconds * 16000 - written)]
            frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = 16000
            frame.pts = written
            for packet in stream.encode(frame):
                container.mux(packet)
            written += piece.size
        for packet in stream.encode(None):
            container.mux(packet)


def run_probe(probe: str, *args: str) -> tuple[str, float, float]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=REPO, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"probe failed: {out.stderr[-2000:]}")
    first, peak_kib = out.stdout.split()[-2:]
    return first, int(peak_kib) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=3.0, help="length of the long file (default: 3)")
    parser.add_argument("--clip", type=int, default=120, help="seconds the CLI transcribes of each file (default: 120)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tingxie-long-") as tmp:
        files = {"10 min": Path(tmp) / "ten_minutes.flac", f"{args.hours:g} h": Path(tmp) / "long.flac"}
        write_speech(files["10 min"], 600)
        write_speech(files[f"{args.hours:g} h"], int(args.hours * 3600))
        peaks: dict[tuple[str, str], float] = {}
        for label, path in files.items():
            seconds, peak, wall = run_probe(STREAM_PROBE, str(path))
            peaks["stream", label] = peak
            print(f"stream  {label:>6}: {float(seconds) / 3600:.2f} h decoded, peak RSS {peak:7.1f} MiB ({wall:.1f} s)", flush=True)
            code, peak, wall = run_probe(CLI_PROBE, str(path), str(Path(tmp) / "out"), str(args.clip))
            peaks["cli", label] = peak
            print(f"cli     {label:>6}: exit {code}, peak RSS {peak:7.1f} MiB ({wall:.1f} s)", flush=True)
        short, long = files
        for kind in ("stream", "cli"):
            diff = peaks[kind, long] - peaks[kind, short]
            print(f"{kind:6}: {long} - {short} = {diff:+.1f} MiB ({peaks[kind, long] / peaks[kind, short]:.2f}x); target within 50 MiB: "
                  f"{'met' if diff <= 50 else 'not met'}")


if __name__ == "__main__":
    main()
