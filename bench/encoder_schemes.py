"""Which arithmetic for the encoder's products keeps the cross K/V near float32 (issue 23): every product of a NumPy
float64 encoder (the convolutions, q/k/v, out, fc1, fc2, the decoder's cross K/V) with its operands rounded as a
kernel would (bfloat16; int8 with symmetric scales per tensor, per row, or per row and block of k), the attention and
everything else exact; relative error of each decoder layer's cross K and V against the float64 encoder.

    python bench/encoder_schemes.py                       # tiny.en on jfk's first window
    python bench/encoder_schemes.py --model base --audio ../shared/data/zh/<file>
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bf16(x: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    return (((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16) << 16).view(np.float32).astype(np.float64)


def int8_rows(x: np.ndarray, block: int | None) -> np.ndarray:
    """x rounded to symmetric int8 with a scale per row (block None) or per row and block of ``block`` columns."""
    rows, k = x.shape
    if block is None:
        scale = np.abs(x).max(1, keepdims=True) / 127
    else:
        padded = np.zeros((rows, -(-k // block) * block))
        padded[:, :k] = x
        scale = np.repeat(np.abs(padded.reshape(rows, -1, block)).max(2) / 127, block, 1)[:, :k]
    scale = np.where(scale == 0, 1, scale)
    return np.round(x / scale).clip(-127, 127) * scale


SCHEMES = {  # (x, w) -> x @ w with the operands as rounded; w's rows are k, so its scales run over w.T's rows
    "float64": lambda x, w: x @ w,
    "bfloat16 (both)": lambda x, w: bf16(x) @ bf16(w),
    "int8 x per tensor, w per column": lambda x, w: (np.round(x / (np.abs(x).max() / 127)) * (np.abs(x).max() / 127)) @ int8_rows(w.T, None).T,
    "int8 x per row, w per column": lambda x, w: int8_rows(x, None) @ int8_rows(w.T, None).T,
    "int8 x per row and 32 k, w per column": lambda x, w: int8_rows(x, 32) @ int8_rows(w.T, None).T,
    "int8 x and w per 64 k": lambda x, w: int8_rows(x, 64) @ int8_rows(w.T, 64).T,
    "int8 x and w per 32 k": lambda x, w: int8_rows(x, 32) @ int8_rows(w.T, 32).T,
}


def encoder(state: dict, dims, mel: np.ndarray, product) -> tuple[list, list]:
    from scipy.special import erf

    def gelu(x):
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))

    def norm(x, name):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * state[f"{name}.weight"] + state[f"{name}.bias"]

    def conv(frames, name):  # width 3 as a product over each output's 3-frame window
        weight = state[f"{name}.weight"]
        return product(frames, weight.transpose(2, 1, 0).reshape(-1, weight.shape[0])) + state[f"{name}.bias"]

    n, heads, t = dims.n_audio_state, dims.n_audio_head, mel.shape[1] // 2
    padded = np.pad(mel.T, ((1, 1), (0, 0)))
    hidden = np.pad(gelu(conv(np.concatenate([padded[:-2], padded[1:-1], padded[2:]], 1), "encoder.conv1")), ((1, 1), (0, 0)))
    x = gelu(conv(np.concatenate([hidden[0:-2:2], hidden[1:-1:2], hidden[2::2]], 1), "encoder.conv2")) + state["encoder.positional_embedding"][:t]
    for i in range(dims.n_audio_layer):
        p = f"encoder.blocks.{i}."
        a = norm(x, p + "attn_ln")
        q, k, v = (product(a, state[f"{p}attn.{name}.weight"].T) + state.get(f"{p}attn.{name}.bias", 0) for name in ("query", "key", "value"))
        q, k, v = (m.reshape(t, heads, 64).transpose(1, 0, 2) for m in (q, k, v))
        scores = q @ k.transpose(0, 2, 1) / 8
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        attended = ((weights / weights.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(t, n)
        x = x + product(attended, state[p + "attn.out.weight"].T) + state[p + "attn.out.bias"]
        hidden = gelu(product(norm(x, p + "mlp_ln"), state[p + "mlp.0.weight"].T) + state[p + "mlp.0.bias"])
        x = x + product(hidden, state[p + "mlp.2.weight"].T) + state[p + "mlp.2.bias"]
    a = norm(x, "encoder.ln_post")
    keys = [product(a, state[f"decoder.blocks.{j}.cross_attn.key.weight"].T) for j in range(dims.n_text_layer)]
    values = [product(a, state[f"decoder.blocks.{j}.cross_attn.value.weight"].T) + state[f"decoder.blocks.{j}.cross_attn.value.bias"]
              for j in range(dims.n_text_layer)]
    return keys, values


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--audio", default=str(REPO.parent / "shared" / "data" / "en" / "jfk.flac"))
    args = p.parse_args()
    import tingxie
    from tingxie.audio import decode_audio
    from tingxie.weights.arrays import load_array_checkpoint

    engine = tingxie.load_model(args.model).engine
    source = json.loads((engine._encoder_args[0] / "meta.json").read_text(encoding="utf-8"))["source"]
    checkpoint = load_array_checkpoint(source, download=False)
    state = {name: np.asarray(value, np.float64) for name, value in checkpoint.state.items()}
    log_mel = engine.log_mel(decode_audio(args.audio))[:, :3000]
    mel = np.zeros((log_mel.shape[0], 3000))
    mel[:, : log_mel.shape[1]] = log_mel
    exact = encoder(state, checkpoint.dims, mel, SCHEMES["float64"])
    for name, product in list(SCHEMES.items())[1:]:
        keys, values = encoder(state, checkpoint.dims, mel, product)
        k = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(keys, exact[0])]
        v = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(values, exact[1])]
        print(f"{args.model} {name}: cross K {100 * min(k):.2f}-{100 * max(k):.2f} %, V {100 * min(v):.2f}-{100 * max(v):.2f} %", flush=True)


if __name__ == "__main__":
    main()
