"""The three ways in (the Python API, the CLI and the server) run the same engine by default and give the same text
for the same file and options."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, audio_path, require_shared

FILES = ("jfk", "libri_1089-134691-0000")


def test_api_cli_and_server_give_the_same_text(tiny_en_default, tmp_path):
    require_shared()
    from test_server_support import openai_client, start_in_process

    assert tiny_en_default.description == "onnxruntime int8 (cpu)"  # load_model's default is the fast engine
    paths = [str(audio_path(name)) for name in FILES]
    # the CLI's defaults (beam search with 5 beams, best of 5 when sampling), given to the API by hand
    api = [tiny_en_default.transcribe(p, beam_size=5, best_of=5).text.strip() for p in paths]
    run = subprocess.run([sys.executable, "-m", "tingxie", "transcribe", *paths, "--output_format", "json", "--output_dir", str(tmp_path),
                          "--verbose", "False"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    cli = [json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))["text"].strip() for name in FILES]
    server = start_in_process(tiny_en_default, beam_size=5, best_of=5)  # the server's own defaults
    try:
        client = openai_client(server.url)
        served = []
        for p in paths:
            with open(p, "rb") as f:
                served.append(client.audio.transcriptions.create(model="tiny.en", file=f, response_format="json").text.strip())
    finally:
        server.stop()
    assert api == cli == served
    assert "ask not what your country can do for you" in api[0]
