"""Where the int8 model's error enters: its encoder and decoder against float32's, on real speech (issue 23).

    python bench/int8_error.py                    # tiny.en, the golden first windows of ../shared (English)

Teacher-forced on the reference's own tokens (../shared/golden/*.beam5.json, first 30-s window, over its log-mel):
- encoder: relative error of the cross-attention keys/values (what the decoder reads) against float32's;
- decoder alone: float32's encoder features into the int8 decoder: next-token KL to float32 and top-1 agreement;
- whole: both int8.
The int8 model is whatever ``tingxie.load_model(model)`` makes on this machine (the default: ONNX Runtime int8, made by
tingxie/ort/quantize_plan.py), or ``--int8_folder``: an exported model folder (e.g. a variant of the plan exported with
``tingxie.ort.export.export_model``), to measure a changed quantizer without regenerating the shipped graphs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO.parent / "shared" / "golden"
sys.path.insert(0, str(REPO))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def compare(reference: np.ndarray, logits: np.ndarray) -> tuple[float, float, int]:
    p, q = log_softmax(reference), log_softmax(logits)
    return float((np.exp(p) * (p - q)).sum()), float((p.argmax(-1) == q.argmax(-1)).sum()), len(p)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny.en", help="an English model whose golden outputs ../shared holds (default: tiny.en)")
    p.add_argument("--int8_folder", help="an exported int8 model folder of that model to measure instead of the default")
    args = p.parse_args()
    import tingxie

    int8 = load_folder(args.int8_folder) if args.int8_folder else tingxie.load_model(args.model)
    print(report(args.model, int8, tingxie.load_model(args.model, compute_type="float32")))
    return 0


def load_folder(folder: str):
    """A WhisperModel over an exported ONNX Runtime model folder (its meta.json and graphs)."""
    from tingxie.api import WhisperModel
    from tingxie.ort.runtime import OrtWhisper

    engine = OrtWhisper(Path(folder))
    return WhisperModel(engine, alignment_heads=engine.alignment_heads or None)


def report(model_name: str, int8, float32) -> str:
    """The three measures of int8 against float32 on the golden first windows, as printed lines."""
    from tingxie.ort.runtime import WindowFeatures

    sot = [50257]
    totals = {"decoder alone": [0.0, 0.0, 0], "whole": [0.0, 0.0, 0]}
    encoder_errors = []
    for mel_path in sorted(GOLDEN.glob("*.mel.npy")) + sorted((GOLDEN / "extra").glob("*.mel.npy")):
        result = mel_path.with_name(mel_path.name.replace(".mel.npy", ".beam5.json"))
        if not result.is_file():
            continue
        tokens = [t for s in json.loads(result.read_text(encoding="utf-8"))["segments"] if s["seek"] == 0 for t in s["tokens"]]
        if not tokens:
            continue
        mel = np.load(mel_path).astype(np.float32)[None]
        sequence = np.array([sot + tokens], dtype=np.int64)
        f32 = float32.engine.encode(mel)
        f8 = int8.engine.encode(mel)
        encoder_errors.append(np.mean([np.linalg.norm(a - b) / np.linalg.norm(a) for a, b in
                                       zip(f32.cross_k + f32.cross_vt, f8.cross_k + f8.cross_vt)]))
        reference = float32.engine.decode(sequence, float32.engine.new_cache(f32))[0, :-1].copy()
        fresh = WindowFeatures(f32.cross_k, f32.cross_vt)  # no prompt results cached from the float32 decoder
        for name, features in (("decoder alone", fresh), ("whole", f8)):
            kl, agree, n = compare(reference, int8.engine.decode(sequence, int8.engine.new_cache(features))[0, :-1])
            totals[name][0] += kl
            totals[name][1] += agree
            totals[name][2] += n
    lines = [f"{model_name}: {len(encoder_errors)} windows, {totals['whole'][2]} tokens; int8 = {int8.engine.description}",
             f"encoder: cross K/V relative error {np.mean(encoder_errors) * 100:.2f} %"]
    lines += [f"{name}: next-token KL {kl / n:.5f}, top-1 agreement {agree / n * 100:.2f} %" for name, (kl, agree, n) in totals.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
