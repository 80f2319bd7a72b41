"""Accuracy of every system and configuration on every language group of ../shared/data, in one table (issue 23).

    python bench/accuracy.py                      # every group and system (one repeat; ~15-25 min on 2 busy cores)
    python bench/accuracy.py --groups en --systems tingxie-int8,tingxie-float32
    python bench/accuracy.py --groups nonspeech --systems tingxie-int8,tingxie-torch --batch_size 4   # VAD-batched

Groups (human references only; ``extra/`` included):
- en: English utterances with tiny.en (data/en without the long-form concatenation, and extra/en_*), WER;
- en-extra: the part of en from extra/manifest.tsv alone (LJ Speech, LibriSpeech, LibriVox, CMU cards), WER;
- en-heldout: the English recordings en leaves out, whose references are a script or approximate (declaration_tts,
  word_list, comfyui_hotword), WER;
- zh: Mandarin with base, CER after Traditional -> Simplified (OpenCC) on both sides;
- other: French/German/Spanish/Italian/Portuguese with base, WER;
- radio: the same English utterances made radio-like (tests/radio_like.py: band-pass 300-3000 Hz, compression, noise at
  6 dB SNR, dropouts) with tiny.en, WER, and the longest back-to-back repeat of a phrase in any output;
- nonspeech: misc/silence and misc/laughter with tiny.en: the characters written (should be none).
Every system decodes with beam 5, best_of 5, temperature fallback, the language given; the same weights (tingxie's
checkpoints; faster-whisper reads the same CTranslate2 files). Scores through tingxie.scoring (Whisper's
normalisers; jiwer). Needs (bench only): faster-whisper; openai-whisper runs where it imports (else a printed reason).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SYSTEMS = {
    "tingxie-int8": "tingxie default on a CPU (ONNX Runtime int8, quantize_plan)",
    "tingxie-float32": "tingxie --compute_type float32 (the reference's outputs)",
    "tingxie-torch": "tingxie --backend torch --compute_type float32 (the PyTorch engine)",
    "fw-int8": "faster-whisper compute_type=int8 (CTranslate2)",
    "openai": "openai-whisper float32 (the reference)",
}
MODELS = {"en": "tiny.en", "en-extra": "tiny.en", "en-heldout": "tiny.en", "radio": "tiny.en", "nonspeech": "tiny.en", "zh": "base", "other": "base"}


def rows(manifest: Path) -> list[dict]:
    with manifest.open(encoding="utf-8") as f:
        found = list(csv.DictReader(f, delimiter="\t"))
    for row in found:
        row["file"] = manifest.parent / row["path"]
    return found


def group_rows(group: str) -> list[dict]:
    every = rows(DATA / "manifest.tsv") + rows(DATA / "extra" / "manifest.tsv")
    human = [r for r in every if r["reference_kind"] == "human" and r["id"] not in ("real_concat", "stereo_two_speakers")]
    if group in ("en", "radio"):
        return [r for r in human if r["language"] == "en"]
    if group == "en-extra":
        return [r for r in human if r["language"] == "en" and r["id"].startswith("en_")]
    if group == "en-heldout":
        return [r for r in every if r["language"] == "en" and r["reference_kind"] in ("script", "approx") and r["id"] not in ("silence", "laughter")]
    if group == "zh":
        return [r for r in human if r["language"] == "zh"]
    if group == "other":
        return [r for r in human if r["language"] not in ("en", "zh", "en+fr")]
    return [r for r in every if r["id"] in ("silence", "laughter")]


def audio_of(row: dict, group: str):
    from tingxie.audio import decode_audio

    audio = decode_audio(str(row["file"]))
    if group == "radio":
        spec = importlib.util.spec_from_file_location("radio_like", REPO / "tests" / "radio_like.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        audio = module.radio_like(audio, 6.0, seed=7)
    return audio


def transcriber(system: str, model_name: str, int8_folders: dict[str, str] | None = None, batch_size: int = 0):
    """A function (audio, language) -> text, or a string saying why the system cannot run. ``int8_folders``: model
    name -> an exported int8 model folder to run as tingxie-int8 instead of the default (a variant of the plan).
    ``batch_size``: tingxie in VAD-batched mode (``--batch_size``), 0 sequential."""
    if system.startswith("tingxie"):
        import tingxie
        from tingxie.batched import transcribe_batched

        if system == "tingxie-int8" and (int8_folders or {}).get(model_name):
            from int8_error import load_folder

            model = load_folder(int8_folders[model_name])
        else:
            backend = "torch" if system == "tingxie-torch" else "auto"
            model = tingxie.load_model(model_name, backend=backend, compute_type="auto" if system == "tingxie-int8" else "float32")
        if batch_size:
            return lambda audio, language: transcribe_batched(model, audio, batch_size=batch_size, language=language, beam_size=5, best_of=5).text
        return lambda audio, language: model.transcribe(audio, language=language, beam_size=5, best_of=5).text
    if system == "fw-int8":
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            return f"faster-whisper is not installed ({e})"
        from tingxie.weights import resolve_model

        model = WhisperModel(str(resolve_model(model_name)), device="cpu", compute_type="int8")
        return lambda audio, language: "".join(s.text for s in model.transcribe(audio, language=language, beam_size=5, best_of=5)[0])
    try:
        import whisper  # noqa: F401
    except Exception as e:  # installed without its dependencies (numba, ...): say so and go on
        return f"openai-whisper does not import here ({type(e).__name__}: {e})"
    return "openai-whisper: a .pt of the same weights is not made by this bench yet (bench/speed.py does it for tiny.en)"


def score(group: str, refs: list[str], hyps: list[str], languages: list[str]):
    from tingxie.scoring import score_pairs

    if group == "zh":
        from tingxie.chinese import convert

        refs, hyps = [convert(r, "simplified") for r in refs], [convert(h, "simplified") for h in hyps]
    return score_pairs(refs, hyps, languages)


def longest_loop(texts: list[str]) -> int:
    from tingxie.decoding.repetition import longest_repeat, words_of

    counts = [r.count for r in (longest_repeat(words_of(t)) for t in texts) if r]
    return max(counts, default=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", default="en,zh,other,radio,nonspeech",
                   help="comma-separated groups (default: en,zh,other,radio,nonspeech; also en-extra, en-heldout)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated among {', '.join(SYSTEMS)} (default: all)")
    p.add_argument("--int8_folder", action="append", default=[], metavar="MODEL=FOLDER",
                   help="run tingxie-int8 of MODEL from this exported folder (a quantize_plan variant), e.g. tiny.en=/tmp/variant")
    p.add_argument("--batch_size", type=int, default=0, help="run the tingxie systems in VAD-batched mode with this batch size (0: sequential)")
    p.add_argument("--texts", help="also write every output text to this JSON file ({group: {system: [texts]}})")
    args = p.parse_args()
    groups, systems = args.groups.split(","), args.systems.split(",")
    folders = dict(spec.split("=", 1) for spec in args.int8_folder)
    texts: dict[str, dict[str, list[str]]] = {}
    lines = ["| group (model) | system | utterances | reference units | WER / CER | longest repeat | seconds |", "|---|---|---|---|---|---|---|"]
    by_model: dict[str, list[str]] = {}
    for group in groups:
        by_model.setdefault(MODELS[group], []).append(group)
    for model_name, model_groups in by_model.items():
        for system in systems:
            run = transcriber(system, model_name, folders, args.batch_size)
            if isinstance(run, str):
                print(f"skipped {system} ({model_name}): {run}", flush=True)
                continue
            name = f"{system} --batch_size {args.batch_size}" if args.batch_size and system.startswith("tingxie") else system
            for group in model_groups:
                chosen = group_rows(group)
                start = time.perf_counter()
                hyps = [run(audio_of(r, group), r["language"]) for r in chosen]
                seconds = time.perf_counter() - start
                texts.setdefault(group, {})[system] = hyps
                if group == "nonspeech":
                    written = sum(len(h.strip()) for h in hyps)
                    line = f"| {group} ({model_name}) | {name} | {len(chosen)} | - | {written} characters written | - | {seconds:.0f} |"
                else:
                    s = score(group, [r["reference"] for r in chosen], hyps, [r["language"] for r in chosen])
                    rate = s.wer * 100
                    label = "CER" if s.unit == "character" else "WER"
                    line = (f"| {group} ({model_name}) | {name} | {len(chosen)} | {s.reference_words} {'characters' if label == 'CER' else 'words'} | "
                            f"{label} {rate:.2f} % | {longest_loop(hyps)} | {seconds:.0f} |")
                print(line, flush=True)
                lines.append(line)
    print("\n" + "\n".join(lines))
    if args.texts:
        Path(args.texts).write_text(json.dumps(texts, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
