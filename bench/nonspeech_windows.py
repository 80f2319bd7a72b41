"""Every window the non-speech rule judges (issue 23, ``tingxie/decoding/nonspeech.py``), on every file of
../shared/data's manifests, in one mode and on one engine: the window's scores, the VAD's speech in it, dropped or not.

    python bench/nonspeech_windows.py                                   # sequential, the default engine (ONNX int8)
    python bench/nonspeech_windows.py --batch_size 4 --backend torch --compute_type float32 --radio

tiny.en for English, base for the rest; beam 5, best_of 5, temperature fallback, the manifest's language given.
``--radio``: the human-referenced English utterances made radio-like (tests/radio_like.py, 6 dB, seed 7) instead.
A file none of whose windows is dropped gives the text it gave without the rule.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch_size", type=int, default=0, help="VAD-batched mode with this batch size (0: sequential)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--compute_type", default="auto")
    p.add_argument("--radio", action="store_true", help="the radio-like English set instead of the manifests")
    p.add_argument("--only", help="comma-separated ids (default: every file)")
    args = p.parse_args()

    from accuracy import DATA, audio_of, group_rows, rows

    import tingxie
    from tingxie import window_step
    from tingxie.batched import transcribe_batched
    from tingxie.decoding import nonspeech

    if args.radio:
        chosen, group = group_rows("radio"), "radio"
    else:
        chosen, group = rows(DATA / "manifest.tsv") + rows(DATA / "extra" / "manifest.tsv"), "all"
    if args.only:
        chosen = [r for r in chosen if r["id"] in args.only.split(",")]
    current: dict[str, str] = {}
    judged: list[str] = []

    def spy(result, options, speech):  # what finish_window asks, logged with the VAD's speech in the window
        if not nonspeech.model_doubts(result, options):
            return False
        seconds = speech()
        dropped = seconds is not None and seconds < nonspeech.MIN_SPEECH_SECONDS
        judged.append(f"| {current['id']} | {result.temperature:.1f} | {result.no_speech_prob:.2f} | {result.avg_logprob:.2f} | "
                      f"{'-' if seconds is None else f'{seconds:.2f} s'} | {'dropped' if dropped else 'kept'} | {result.text.strip()[:60]!r} |")
        print(judged[-1], flush=True)
        return dropped

    window_step.hears_no_speech = spy
    models: dict[str, object] = {}
    start, files, dropped_files = time.perf_counter(), 0, set()
    for row in chosen:
        name = "tiny.en" if row["language"] == "en" else "base"
        if name not in models:
            models[name] = tingxie.load_model(name, backend=args.backend, compute_type=args.compute_type)
        model = models[name]
        current["id"] = row["id"]
        language = None if "+" in row["language"] else row["language"]  # en+fr: detected
        audio = audio_of(row, group)
        before = len(judged)
        if args.batch_size:
            transcribe_batched(model, audio, batch_size=args.batch_size, language=language, beam_size=5, best_of=5)
        else:
            model.transcribe(audio, language=language, beam_size=5, best_of=5)
        files += 1
        if any("dropped" in line for line in judged[before:]):
            dropped_files.add(row["id"])
    print(f"\n{files} files ({group}), mode {'batched ' + str(args.batch_size) if args.batch_size else 'sequential'}, {args.backend} "
          f"{args.compute_type}, {time.perf_counter() - start:.0f} s: {len(judged)} windows judged, files with a window dropped: "
          f"{sorted(dropped_files) or 'none'}")
    print("| file | temperature | no_speech_prob | avg_logprob | VAD speech | rule | text |\n|---|---|---|---|---|---|---|")
    print("\n".join(judged))
    return 0


if __name__ == "__main__":
    sys.exit(main())
