"""WER of the default engine's text against the reference implementation's outputs in ../shared/golden (tiny.en,
beam 5, temperature 0, word timestamps, English rows with golden outputs), and of the float32 switch (which must be 0): how far int8 is from the
reference, file by file.

    python bench/golden_wer.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA, GOLDEN = REPO.parent / "shared" / "data", REPO.parent / "shared" / "golden"


def main() -> int:
    import tingxie
    from tingxie.scoring import score_pairs

    rows = [line.split("\t") for line in (DATA / "manifest.tsv").read_text().splitlines()[1:]]
    models = {"int8 (default)": tingxie.load_model("tiny.en"), "float32": tingxie.load_model("tiny.en", compute_type="float32")}
    totals = {name: [0, 0] for name in models}
    for row in rows:
        golden = GOLDEN / f"{row[0]}.beam5.json"
        if row[2] != "en" or not golden.is_file():
            continue
        reference = json.loads(golden.read_text())["text"]
        cells = []
        for name, model in models.items():  # the golden runs' options: beam 5, temperature 0, word timestamps
            text = model.transcribe(str(DATA / row[1]), beam_size=5, temperature=0.0, word_timestamps=True).text
            scored = score_pairs([reference], [text], "en").utterances[0]
            errors, words = scored.errors, scored.reference_words
            totals[name][0] += errors
            totals[name][1] += words
            cells.append(f"{name} {errors}/{words}")
        print(f"{row[0]}: " + ", ".join(cells))
    for name, (errors, words) in totals.items():
        print(f"{name}: WER {100 * errors / max(words, 1):.2f} % against the reference's text ({errors} errors / {words} words)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
