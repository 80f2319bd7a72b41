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
from speed import REPO, compile_tingxie, fw_model_dir, run_child_rss  # noqa: E402

DATA = REPO.parent / "shared" / "data"
GOLDEN = REPO.parent / "shared" / "golden"
GLOSSARY = "Kubernetes, ComfyUI, PyTorch, kubectl, Grafana, Prometheus, Terraform, Ansible, PostgreSQL, Redis"

FW_SUBTITLES = """
import sys
from faster_whisper import WhisperModel
model = WhisperModel(sys.argv[1], device="cpu", compute_type="int8")
words = sys.argv[5] == "1"
segments, _ = model.transcribe(sys.argv[2], beam_size=int(sys.argv[4]), language="en", word_timestamps=words)
def ts(t):
    ms = round(t * 1000); h, ms = divmod(ms, 3600000); m, ms = divmod(ms, 60000); s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"
with open(sys.argv[3], "w") as f:
    for i, s in enumerate(segments, 1):
        f.write(f"{i}\\n{ts(s.start)} --> {ts(s.end)}\\n{s.text.strip()}\\n\\n")
"""
# (name, beam, word timestamps): the subtitle job and the same file's plain transcription, greedy and beam 5
SUBTITLE_RUNS = (("greedy", 1, False), ("beam 5", 5, False), ("beam 5, word timestamps, SRT", 5, True))


def subtitles(path: Path, repeats: int) -> list[str]:
    """Whole processes, alternating: the tingxie CLI's defaults (SRT out; --beam_size None for greedy, --word_timestamps
    as named) and faster-whisper int8 with the same beam and word_timestamps."""
    with tempfile.TemporaryDirectory() as out:
        script = Path(out) / "fw_srt.py"
        script.write_text(FW_SUBTITLES)
        commands = {}
        for name, beam, words in SUBTITLE_RUNS:
            greedy = ["--beam_size", "None"] if beam == 1 else []
            commands[("tingxie", name)] = [sys.executable, "-m", "tingxie", "transcribe", str(path), *greedy, "--word_timestamps", str(words),
                                           "--output_format", "srt", "--output_dir", out, "--verbose", "False", "--progress", "False"]
            commands[("fw-int8", name)] = [sys.executable, str(script), fw_model_dir(), str(path), str(Path(out) / "fw.srt"), str(beam), str(int(words))]
        run_child_rss(commands[("tingxie", SUBTITLE_RUNS[-1][0])])  # the first run exports the graphs into the cache: not timed
        times: dict[tuple, list[float]] = {k: [] for k in commands}
        rss: dict[tuple, list[float]] = {k: [] for k in commands}
        for _ in range(repeats):
            for key, cmd in commands.items():
                wall, peak, _ = run_child_rss(cmd)
                times[key].append(wall)
                rss[key].append(peak)
    lines = []
    for name, _, _ in SUBTITLE_RUNS:
        t, f = statistics.median(times[("tingxie", name)]), statistics.median(times[("fw-int8", name)])
        rt, rf = max(rss[("tingxie", name)]), max(rss[("fw-int8", name)])
        lines.append(f"{path.name}, whole process, {name}: tingxie {t:.2f} s / {rt:.0f} MiB, faster-whisper int8 {f:.2f} s / {rf:.0f} MiB: "
                     f"ratio {t / f:.2f}x wall, {rt / rf:.2f}x peak RSS")
    return lines


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


def _spoken(word: str) -> str:
    """A word as said, for pairing two hypotheses' words: case and punctuation do not move a word in time."""
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")


def _agreement(ours: list[tuple[str, float, float]], theirs: list[tuple[str, float, float]]) -> tuple[int, int]:
    """(words of ``theirs`` that ``ours`` also has, in order, with start and end within 0.1 s; words both have)."""
    matcher = difflib.SequenceMatcher(a=[_spoken(w[0]) for w in ours], b=[_spoken(t[0]) for t in theirs], autojunk=False)
    close = shared = 0
    for block in matcher.get_matching_blocks():
        for w, t in zip(ours[block.a : block.a + block.size], theirs[block.b : block.b + block.size]):
            shared += 1
            close += abs(w[1] - t[1]) <= 0.1 and abs(w[2] - t[2]) <= 0.1
    return close, shared


def _same_text_timings(model, engines: dict, path: Path, segments) -> dict[str, list[tuple[str, float, float]]]:
    """Word timings of float32's own segments (same text, same windows) computed by each engine from its own encoder
    features: the engines' numerics alone, without the text differences of their decodes."""
    from tingxie.audio import N_FRAMES, N_SAMPLES, decode_audio, pad_or_trim
    from tingxie.timing import add_word_timestamps

    tokenizer = model.tokenizer("en")
    mel = model.engine.log_mel(decode_audio(str(path)), padding=N_SAMPLES)
    content = mel.shape[-1] - N_FRAMES
    found: dict[str, list[tuple[str, float, float]]] = {name: [] for name in engines}
    for seek in sorted({s.seek for s in segments}):
        size = min(N_FRAMES, content - seek)
        window = pad_or_trim(mel[:, seek : seek + size], N_FRAMES)[None].astype("float32")
        for name, engine in engines.items():
            parts = [{"seek": seek, "start": s.start, "end": s.end, "tokens": list(s.tokens)} for s in segments if s.seek == seek]
            add_word_timestamps(segments=parts, engine=engine, tokenizer=tokenizer, audio_features=engine.encode(window), num_frames=size,
                                alignment_heads=model.alignment_heads, prepend_punctuations="\"'“¿([{-",
                                append_punctuations="\"'.。,，!！?？:：”)]}、", last_speech_timestamp=0.0)
            found[name] += [(w["word"], w["start"], w["end"]) for p in parts for w in p.get("words", [])]
    return found


def word_timing_agreement() -> list[str]:
    """Every English speech file with golden outputs: int8 word timings against float32's (words paired by their spoken
    form, in order), float32's against the reference's golden words, and int8 against float32 on float32's own text."""
    import json

    import tingxie

    fp32, int8 = tingxie.load_model("tiny.en", compute_type="float32"), tingxie.load_model("tiny.en")
    rows = [line.split("\t") for line in (DATA / "manifest.tsv").read_text().splitlines()[1:]]
    # close, shared, all of the second's words
    stats = {"int8 vs float32": [0, 0, 0], "float32 vs reference": [0, 0, 0], "int8 vs float32, float32's text": [0, 0, 0]}
    for row in rows:
        golden = GOLDEN / f"{row[0]}.beam5.json"
        if row[2] != "en" or not row[4].strip() or not golden.is_file():  # speech only: no words to time in laughter
            continue
        ref = [(w["word"], w["start"], w["end"]) for s in json.loads(golden.read_text())["segments"] for w in s.get("words", [])]
        # the golden runs' options: beam 5, no temperature fallback
        segments = fp32.transcribe(str(DATA / row[1]), beam_size=5, temperature=0.0, word_timestamps=True).segments
        a = [(w.word, w.start, w.end) for s in segments for w in s.words]
        b = [(w.word, w.start, w.end) for s in int8.transcribe(str(DATA / row[1]), beam_size=5, temperature=0.0, word_timestamps=True).segments
             for w in s.words]
        same = _same_text_timings(fp32, {"float32": fp32.engine, "int8": int8.engine}, DATA / row[1], segments)
        for name, ours, theirs in (("int8 vs float32", b, a), ("float32 vs reference", a, ref),
                                   ("int8 vs float32, float32's text", same["int8"], same["float32"])):
            close, shared = _agreement(ours, theirs)
            for i, n in enumerate((close, shared, len(theirs))):
                stats[name][i] += n
    return [f"word timings, {name}: {close}/{total} words within 0.1 s ({100 * close / total:.1f} %; {close}/{shared} "
            f"({100 * close / max(shared, 1):.1f} %) of the {shared} words both hypotheses have)" for name, (close, shared, total) in stats.items()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; medians are reported (default: 3)")
    p.add_argument("--input", default=str(DATA / "en" / "real_concat.flac"), help="the recording (default: shared real_concat.flac)")
    p.add_argument("--parts", default="subtitles,vocabulary,timing", help="which measurements (default: all three)")
    a = p.parse_args()
    parts = a.parts.split(",")
    compile_tingxie()
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
