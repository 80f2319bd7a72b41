"""Features on the default engine against faster-whisper, in one run: subtitles (word timestamps, SRT) as whole
processes side by side, the cost of hotwords and LM fusion in process, and how close int8 word timings are to float32.

    python bench/features.py --repeats 3

Prints ratios (tingxie / faster-whisper wall time, peak RSS) and the word-timing agreement; results go to
bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import REPO, fw_model_dir, run_child_rss  # noqa: E402

DATA = REPO.parent / "shared" / "data"
GOLDEN = REPO.parent / "shared" / "golden"
GLOSSARY = "Kubernetes, ComfyUI, PyTorch, kubectl, Grafana, Prometheus, Terraform, Ansible, PostgreSQL, Redis"

FW_SUBTITLES = """
import sys
from faster_whisper import WhisperModel
model = WhisperModel(sys.argv[1], device="cpu", compute_type="int8")
segments, _ = model.transcribe(sys.argv[2], beam_size=5, language="en", word_timestamps=True)
def ts(t):
    ms = round(t * 1000); h, ms = divmod(ms, 3600000); m, ms = divmod(ms, 60000); s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"
with open(sys.argv[3], "w") as f:
    for i, s in enumerate(segments, 1):
        f.write(f"{i}\\n{ts(s.start)} --> {ts(s.end)}\\n{s.text.strip()}\\n\\n")
"""


def subtitles(path: Path, repeats: int) -> list[str]:
    """Whole processes, alternating: the tingxie CLI's defaults with --word_timestamps True -f srt, and faster-whisper int8."""
    with tempfile.TemporaryDirectory() as out:
        script = Path(out) / "fw_srt.py"
        script.write_text(FW_SUBTITLES)
        commands = {
            "tingxie": [sys.executable, "-m", "tingxie", "transcribe", str(path), "--word_timestamps", "True", "--output_format", "srt",
                        "--output_dir", out, "--verbose", "False", "--progress", "False"],
            "fw-int8": [sys.executable, str(script), fw_model_dir(), str(path), str(Path(out) / "fw.srt")],
        }
        run_child_rss(commands["tingxie"])  # the first run exports the graphs into the cache: not timed
        times: dict[str, list[float]] = {k: [] for k in commands}
        rss: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(repeats):
            for name, cmd in commands.items():
                wall, peak, _ = run_child_rss(cmd)
                times[name].append(wall)
                rss[name].append(peak)
    t, f = statistics.median(times["tingxie"]), statistics.median(times["fw-int8"])
    rt, rf = max(rss["tingxie"]), max(rss["fw-int8"])
    return [f"subtitles, {path.name}, whole process, beam 5, word timestamps, SRT: tingxie {t:.2f} s / {rt:.0f} MiB, "
            f"faster-whisper int8 {f:.2f} s / {rf:.0f} MiB: ratio {t / f:.2f}x wall, {rt / rf:.2f}x peak RSS"]


def vocabulary_cost(path: Path, repeats: int, lm: str | None) -> list[str]:
    """In process, the default model: decoding with 10 hotwords, and beam 5 with an LM, against the same without."""
    import tingxie

    model = tingxie.load_model("tiny.en")
    model.transcribe(str(path))  # warm

    def timed(**kw) -> float:
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.transcribe(str(path), **kw)
            runs.append(time.perf_counter() - t)
        return statistics.median(runs)

    lines = []
    for beam in (None, 5):
        base, hot = timed(beam_size=beam), timed(beam_size=beam, hotwords=GLOSSARY)
        lines.append(f"hotwords (10 terms), {path.name}, beam {beam or 1}: {hot:.2f} s against {base:.2f} s: {hot / base:.2f}x")
    if lm:
        base, fused = timed(beam_size=5), timed(beam_size=5, lm=lm)
        lines.append(f"LM fusion, {path.name}, beam 5: {fused:.2f} s against {base:.2f} s: {fused / base:.2f}x")
    return lines


def word_timing_agreement() -> list[str]:
    """Every English golden file with word timestamps: the share of int8 words within 0.1 s of float32's (same words),
    and float32's against the reference's golden words."""
    import json

    import tingxie

    fp32, int8 = tingxie.load_model("tiny.en", compute_type="float32"), tingxie.load_model("tiny.en")
    rows = [line.split("\t") for line in (DATA / "manifest.tsv").read_text().splitlines()[1:]]
    stats = {"int8 vs float32": [0, 0], "float32 vs reference": [0, 0]}
    for row in rows:
        golden = GOLDEN / f"{row[0]}.beam5.json"
        if row[2] != "en" or not golden.is_file():
            continue
        ref = [w for s in json.loads(golden.read_text())["segments"] for w in s.get("words", [])]
        # the golden runs' options: beam 5, no temperature fallback
        a = [w for s in fp32.transcribe(str(DATA / row[1]), beam_size=5, temperature=0.0, word_timestamps=True).segments for w in s.words]
        b = [w for s in int8.transcribe(str(DATA / row[1]), beam_size=5, temperature=0.0, word_timestamps=True).segments for w in s.words]
        for name, ours, theirs in (("int8 vs float32", b, [(w.word, w.start, w.end) for w in a]),
                                   ("float32 vs reference", a, [(w["word"], w["start"], w["end"]) for w in ref])):
            # words the two hypotheses share (in order), compared by time; words of one hypothesis only count as misses
            matcher = difflib.SequenceMatcher(a=[w.word for w in ours], b=[t[0] for t in theirs], autojunk=False)
            stats[name][1] += len(theirs)
            for block in matcher.get_matching_blocks():
                pairs = zip(ours[block.a : block.a + block.size], theirs[block.b : block.b + block.size])
                stats[name][0] += sum(abs(w.start - t[1]) <= 0.1 and abs(w.end - t[2]) <= 0.1 for w, t in pairs)
    return [f"word timings, {name}: {close}/{total} words within 0.1 s ({100 * close / total:.1f} %; words the other hypothesis "
            f"lacks count as misses)" for name, (close, total) in stats.items()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; medians are reported (default: 3)")
    p.add_argument("--input", default=str(DATA / "en" / "real_concat.flac"), help="the recording (default: shared real_concat.flac)")
    p.add_argument("--parts", default="subtitles,vocabulary,timing", help="which measurements (default: all three)")
    a = p.parse_args()
    parts = a.parts.split(",")
    lines = []
    if "subtitles" in parts:
        lines += subtitles(Path(a.input), a.repeats)
    if "vocabulary" in parts:
        lm = None
        with tempfile.TemporaryDirectory() as work:
            corpus = Path(work) / "corpus.txt"
            corpus.write_text("\n".join(f"we deploy it with {t.strip().lower()} today" for t in GLOSSARY.split(",")) + "\n")
            made = subprocess.run([sys.executable, str(REPO / "scripts" / "make_lm.py"), str(corpus), str(Path(work) / "lm.arpa")],
                                  capture_output=True, text=True, check=False)
            lm = str(Path(work) / "lm.arpa") if made.returncode == 0 else None
            lines += vocabulary_cost(Path(a.input), a.repeats, lm)
    if "timing" in parts:
        lines += word_timing_agreement()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
