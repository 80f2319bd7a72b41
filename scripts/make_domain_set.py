#!/usr/bin/env python3
"""Make the domain-vocabulary speech set: sentences with rare terms spoken by espeak-ng.

The terms (product names, people's names, technical jargon) are in ``scripts/domain_terms.tsv``
with how to say each (espeak-ng reads spellings such as "Nginx" or "Siobhan" badly). Every term
is put into sentence templates; the train split uses one set of templates and the held-out split
another, so no sentence is in both, while every term is in both. The train split also gets
everyday sentences without terms, which keep fine-tuning from bending the model's general language. Each sentence is spoken once, in
a voice, rate and pitch drawn from seeded lists, and mixed with white or pink noise at an SNR drawn
from ``--snr`` ("clean" for none). Needs the espeak-ng program (Debian package ``espeak-ng``).

    python scripts/make_domain_set.py                     # -> data/domain/
    python scripts/make_domain_set.py --out DIR --snr clean,20,10 --train-per-term 4 --seed 0

Writes ``OUT/train.tsv`` and ``OUT/heldout.tsv`` (tab-separated, header ``audio text terms voice
rate snr``; ``audio`` relative to the manifest's folder, ``terms`` the domain terms in the text,
``|``-separated), 16-kHz 16-bit WAV files under ``OUT/train/`` and ``OUT/heldout/``,
``OUT/terms.txt`` (one term a line), ``OUT/real_en.tsv`` (the shared real English speech with
human transcripts, for the general-WER check) and ``OUT/info.json`` (the settings). The same
settings give the same sentences, voices and noise; the audio is the same for the same espeak-ng.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TERMS_FILE = Path(__file__).resolve().parent / "domain_terms.tsv"
SAMPLE_RATE = 16000

# {t} is the term. Train and held-out templates never share a sentence.
TEMPLATES = {
    "product": {
        "train": [
            "We moved the whole service to {t} last spring.",
            "Can you check whether {t} is still running on the staging box?",
            "The new release of {t} fixed the memory leak.",
            "I spent the morning reading the {t} documentation.",
            "Our team replaced the old tool with {t} in one week.",
            "Please open a ticket if {t} fails again tonight.",
        ],
        "heldout": [
            "The demo tomorrow shows how {t} fits into our pipeline.",
            "She asked why {t} needs so much configuration.",
            "After the upgrade, {t} started much faster.",
        ],
    },
    "person": {
        "train": [
            "I had lunch with {t} on Tuesday.",
            "Please send the report to {t} before noon.",
            "{t} will lead the meeting this afternoon.",
            "The letter was signed by {t} and two witnesses.",
            "Have you met {t} from the design team?",
            "My cousin {t} is moving to the city next month.",
        ],
        "heldout": [
            "Yesterday {t} called to say the train was late.",
            "We are waiting for {t} to approve the budget.",
            "The prize went to {t} for the second year.",
        ],
    },
    "jargon": {
        "train": [
            "The lecture explained the {t} in simple terms.",
            "You should write a test for the {t} first.",
            "Nobody in the room knew what {t} meant.",
            "The paper uses a {t} to speed things up.",
            "He drew the {t} on the whiteboard twice.",
            "Our bug was hidden in the {t} code path.",
        ],
        "heldout": [
            "The interview question was about the {t} again.",
            "I finally understood the {t} after the second example.",
            "Her thesis describes a new kind of {t} for large data.",
        ],
    },
}

# Everyday sentences without domain terms, mixed into the train split so the decoder keeps its general
# language (they regularise fine-tuning; the held-out split has none).
GENERAL = (
    "The weather was cold, so we stayed inside and read.",
    "He walked to the station and bought a ticket home.",
    "My sister grows tomatoes and beans in her garden.",
    "The children laughed when the dog chased its tail.",
    "Please close the window before you leave the room.",
    "We had soup and fresh bread for dinner last night.",
    "The river rose after three days of heavy rain.",
    "She wrote a long letter to her grandmother.",
    "The old bridge was painted green in the summer.",
    "I forgot my umbrella on the bus this morning.",
    "The museum opens at ten and closes at six.",
    "They planted apple trees along the northern fence.",
    "The teacher asked the class to read the first chapter.",
    "A small boat drifted slowly across the quiet lake.",
    "He counted the coins twice before paying the baker.",
    "The library is quiet on Sunday afternoons.",
    "Our neighbors painted their front door bright red.",
    "The train was delayed by snow on the tracks.",
    "She listened to the radio while cooking breakfast.",
    "The farmer fed the horses before sunrise.",
    "We watched the stars from the top of the hill.",
    "The shop on the corner sells milk and newspapers.",
    "He fixed the broken chair with glue and a nail.",
    "The baby slept through the thunderstorm.",
    "Turn left at the church and walk past the school.",
    "The soldiers marched through the town at noon.",
    "I would like a cup of tea with a little sugar.",
    "The wind blew the leaves across the empty road.",
    "She found an old photograph in the attic.",
    "The doctor told him to rest for a week.",
    "We crossed the mountains in a borrowed car.",
    "The cat sat by the fire and watched the door.",
    "Every morning he swims in the cold sea.",
    "The price of bread went up again this year.",
    "They sang songs around the campfire until midnight.",
    "The captain ordered the crew to lower the sails.",
    "Her brother plays the violin in an orchestra.",
    "The hotel room had a view of the harbor.",
    "Please write your name at the top of the page.",
    "The garden smelled of roses after the rain.",
    "The letter should arrive before Friday.",
    "The market was crowded with people buying fruit.",
    "We lost our way in the forest and waited for help.",
    "The clock in the hall struck nine times.",
    "She carried the heavy basket up the stairs.",
    "The fishermen returned with a large catch of cod.",
    "I think the meeting will end early today.",
    "The road to the village was covered in mud.",
    "He told a funny story about his first job.",
    "The flowers on the table came from her garden.",
)

# espeak-ng voices (language + variant) and speaking rates in words per minute.
VOICES = ("en-us+m3", "en-us+f2", "en-gb+m1", "en-gb+f3", "en-gb-scotland+m2", "en-gb-x-rp+f1", "en-029+m4", "en-us-nyc+f4")
RATES = (140, 160, 180)
PITCHES = (35, 50, 65)


@dataclass(frozen=True)
class Utterance:
    split: str
    index: int
    text: str  # the reference, with the terms' spelling
    spoken: str  # what espeak-ng reads, with the terms' pronunciation
    terms: tuple[str, ...]
    voice: str
    rate: int
    pitch: int
    snr: float | None
    noise: str

    @property
    def audio(self) -> str:
        return f"{self.split}/{self.split}-{self.index:04d}.wav"


def read_terms(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for row in rows:
        if row.get("category") not in TEMPLATES:
            raise SystemExit(f"{path}: term {row.get('term')!r} has an unknown category {row.get('category')!r}")
    return rows


def parse_snrs(text: str) -> list[float | None]:
    out: list[float | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            out.append(None if part == "clean" else float(part))
        except ValueError:
            raise SystemExit(f"--snr: expected numbers in dB or 'clean', got {part!r}") from None
    return out or [None]


def plan(terms: list[dict[str, str]], args: argparse.Namespace) -> list[Utterance]:
    """Every utterance of both splits, drawn from one seeded generator."""
    rng = random.Random(args.seed)
    snrs = parse_snrs(args.snr)
    per_split = {"train": args.train_per_term, "heldout": args.heldout_per_term}
    utterances: list[Utterance] = []
    for split, count in per_split.items():
        index = 0
        for row in terms:
            templates = TEMPLATES[row["category"]][split]
            if count > len(templates):
                raise SystemExit(f"--{split}-per-term {count}: only {len(templates)} {row['category']} templates for {split}")
            for template in rng.sample(templates, count):
                text = template.format(t=row["term"])
                spoken = template.format(t=row.get("spoken") or row["term"])
                utterances.append(Utterance(
                    split=split, index=index, text=text[0].upper() + text[1:], spoken=spoken, terms=(row["term"],),
                    voice=rng.choice(VOICES), rate=rng.choice(RATES), pitch=rng.choice(PITCHES),
                    snr=rng.choice(snrs), noise=rng.choice(("white", "pink")),
                ))
                index += 1
    for text in GENERAL[: args.general]:
        utterances.append(Utterance(
            split="train", index=sum(u.split == "train" for u in utterances), text=text, spoken=text, terms=(),
            voice=rng.choice(VOICES), rate=rng.choice(RATES), pitch=rng.choice(PITCHES), snr=rng.choice(snrs), noise=rng.choice(("white", "pink")),
        ))
    sentences = {s: {u.text for u in utterances if u.split == s} for s in per_split}
    assert not sentences["train"] & sentences["heldout"], "a sentence is in both splits"
    return utterances


def speak(u: Utterance, espeak: str) -> np.ndarray:
    """16-kHz float32 samples of espeak-ng reading the sentence."""
    command = [espeak, "-v", u.voice, "-s", str(u.rate), "-p", str(u.pitch), "--stdout", u.spoken]
    wav = subprocess.run(command, check=True, capture_output=True).stdout
    with wave.open(_BytesReader(wav)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    # linear-interpolation resampling is enough for speech that is band-limited well below 8 kHz
    n = int(round(samples.size * SAMPLE_RATE / rate))
    return np.interp(np.arange(n) * rate / SAMPLE_RATE, np.arange(samples.size), samples).astype(np.float32)


class _BytesReader:
    """A minimal file object over bytes for ``wave.open`` (espeak-ng's streamed WAV header has no length)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk

    def close(self) -> None:
        pass


def add_noise(speech: np.ndarray, snr_db: float | None, kind: str, seed: int) -> np.ndarray:
    """Speech plus white or pink noise at ``snr_db`` (relative to the speech's mean power); padded with 0.3 s each side."""
    pad = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    signal = np.concatenate([pad, speech, pad])
    if snr_db is None:
        return signal
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(signal.size)
    if kind == "pink":  # 1/f power: scale the spectrum by 1/sqrt(f)
        spectrum = np.fft.rfft(noise)
        spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
        noise = np.fft.irfft(spectrum, n=signal.size)
    speech_power = float(np.mean(speech**2)) + 1e-12
    noise *= np.sqrt(speech_power / (10 ** (snr_db / 10)) / (float(np.mean(noise**2)) + 1e-12))
    return (signal + noise).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray) -> None:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > 0.99:  # keep noisy mixes from clipping
        samples = samples * (0.99 / peak)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    tmp = path.with_name(f".{path.name}.part")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def real_english_rows(shared: Path) -> list[list[str]]:
    """The shared real English recordings with human transcripts, from data/ and data/extra/ (the long-form
    concatenation left out: it repeats them)."""
    out = []
    for folder in (shared / "data", shared / "data" / "extra"):
        manifest = folder / "manifest.tsv"
        if not manifest.is_file():
            continue
        with open(manifest, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        keep = [r for r in rows if r["language"] == "en" and r["reference_kind"] == "human" and r["id"] not in ("real_concat", "stereo_two_speakers")]
        out += [[str((folder / r["path"]).resolve()), r["reference"], r["id"]] for r in keep]
    return out


def build(args: argparse.Namespace) -> int:
    espeak = shutil.which(args.espeak) or (args.espeak if Path(args.espeak).is_file() else None)
    if espeak is None:
        print(f"error: espeak-ng not found ({args.espeak}); install it (Debian: apt-get install espeak-ng)", file=sys.stderr)
        return 2
    terms = read_terms(args.terms)
    utterances = plan(terms, args)
    out: Path = args.out
    for split in ("train", "heldout"):
        (out / split).mkdir(parents=True, exist_ok=True)

    def make(u: Utterance) -> None:
        target = out / u.audio
        audio = add_noise(speak(u, espeak), u.snr, u.noise, seed=args.seed * 100003 + hash_text(u.audio))
        write_wav(target, audio)

    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(tqdm(pool.map(make, utterances), total=len(utterances), desc="speaking", unit="utt"))

    header = ["audio", "text", "terms", "voice", "rate", "snr"]
    for split in ("train", "heldout"):
        rows = [[u.audio, u.text, "|".join(u.terms), u.voice, str(u.rate), "clean" if u.snr is None else f"{u.snr:g}"] for u in utterances if u.split == split]
        write_tsv(out / f"{split}.tsv", header, rows)
    tmp = out / ".terms.txt.part"
    tmp.write_text("".join(f"{row['term']}\n" for row in terms), encoding="utf-8")
    os.replace(tmp, out / "terms.txt")
    real = real_english_rows(args.shared)
    if real:
        write_tsv(out / "real_en.tsv", ["audio", "text", "id"], real)
    info = {
        "seed": args.seed, "snr": args.snr, "train_per_term": args.train_per_term, "heldout_per_term": args.heldout_per_term, "general": args.general,
        "voices": list(VOICES), "rates": list(RATES), "pitches": list(PITCHES), "terms": len(terms),
        "train": sum(u.split == "train" for u in utterances), "heldout": sum(u.split == "heldout" for u in utterances),
        "espeak": subprocess.run([espeak, "--version"], capture_output=True, text=True).stdout.strip(),
    }
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {info['train']} train and {info['heldout']} held-out utterances, {len(terms)} terms, {len(real)} real English rows to {out}")
    return 0


def hash_text(text: str) -> int:
    """A stable per-file number (Python's hash() changes between runs)."""
    return int.from_bytes(text.encode("utf-8")[-8:].rjust(8, b"\0"), "little") % 1_000_003


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Make the espeak-ng domain-vocabulary speech set (train and held-out).")
    p.add_argument("--out", type=Path, default=REPO / "data" / "domain", help="output folder (default: data/domain)")
    p.add_argument("--terms", type=Path, default=TERMS_FILE, help="TSV of term, category, spoken (default: scripts/domain_terms.tsv)")
    p.add_argument("--train-per-term", type=int, default=4, help="train sentences per term, at most 6 (default: 4)")
    p.add_argument("--heldout-per-term", type=int, default=2, help="held-out sentences per term, at most 3 (default: 2)")
    p.add_argument("--general", type=int, default=len(GENERAL),
                   help=f"everyday sentences without terms added to train, at most {len(GENERAL)} (default: {len(GENERAL)})")
    p.add_argument("--snr", default="clean,20,10", help="SNRs in dB drawn per utterance, 'clean' for no noise (default: clean,20,10)")
    p.add_argument("--seed", type=int, default=0, help="seed for sentences, voices and noise (default: 0)")
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="shared data folder for real_en.tsv (default: ../shared)")
    p.add_argument("--espeak", default="espeak-ng", help="espeak-ng program (default: espeak-ng on PATH)")
    p.add_argument("--jobs", type=int, default=2, help="espeak-ng processes at once (default: 2)")
    return build(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
