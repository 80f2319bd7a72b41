"""The int8 model's encoder time per 30-s window: the int8 stages (``TINGXIE_ENCODER=int8``) against the default
(the bfloat16 encoder on CPUs with AVX512-BF16: AMX tiles or vectors), alternating window by window in one process (issue 23).

    /work/notes/cpu-exclusive python bench/encoder_speed.py --model tiny.en --windows 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--windows", type=int, default=12, help="windows timed per encoder (default: 12)")
    p.add_argument("--audio", default=str(REPO.parent / "shared" / "data" / "en" / "real_concat.flac"))
    args = p.parse_args()
    import tingxie
    from tingxie.audio import decode_audio

    os.environ["TINGXIE_ENCODER"] = "int8"
    stages = tingxie.load_model(args.model).engine
    del os.environ["TINGXIE_ENCODER"]
    default = tingxie.load_model(args.model).engine
    audio = decode_audio(args.audio)
    mels = []
    for i in range(max(1, min(3, len(audio) // 480000))):
        mel = default.log_mel(audio[i * 480000 : (i + 1) * 480000])[None, :, :3000]
        mels.append(np.pad(mel, ((0, 0), (0, 0), (0, 3000 - mel.shape[-1]))).astype(np.float32))
    encoders = {f"int8 stages ({type(stages.encoder).__name__})": stages, f"default ({type(default.encoder).__name__})": default}
    for engine in encoders.values():
        engine.embed_audio(mels[0])
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for r in range(args.windows):
        for name in list(encoders) if r % 2 == 0 else list(encoders)[::-1]:
            start = time.perf_counter()
            encoders[name].embed_audio(mels[r % len(mels)])
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{args.model} {name}: min {1000 * min(values):.0f} ms, median {1000 * statistics.median(values):.0f} ms over {len(values)} windows")


if __name__ == "__main__":
    main()
