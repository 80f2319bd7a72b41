"""The server through the official ``openai`` client: every response_format, word timestamps, streaming,
and the same output as the CLI and the Python API give for the same file and options."""

from __future__ import annotations

import json
import time

import pytest
from test_server_support import clip, openai_client, running_servers


@pytest.fixture(scope="module")
def server(tiny_en):
    yield from running_servers(tiny_en)


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server.url)


@pytest.fixture(scope="module")
def jfk():
    return clip("jfk")


@pytest.fixture(scope="module")
def cli_outputs(jfk, tmp_path_factory):
    """``tingxie transcribe`` with the options and engine the test server uses (the float32 switch, greedy, fallback from 0), every format."""
    from tingxie.cli import main

    out = tmp_path_factory.mktemp("cli")
    status = main([
        "transcribe", str(jfk), "--model", "tiny.en", "--device", "cpu", "--compute_type", "float32", "--beam_size", "None", "--best_of", "None",
        "--temperature", "0", "--output_dir", str(out), "--output_format", "all", "--verbose", "False", "--progress", "False",
    ])
    assert status == 0
    return {fmt: (out / f"jfk.{fmt}").read_text(encoding="utf-8") for fmt in ("txt", "srt", "vtt", "json")}


@pytest.fixture(scope="module")
def cli_words(jfk, tmp_path_factory):
    """``tingxie transcribe --word_timestamps True`` with the server's options: the JSON file, words inside segments."""
    from tingxie.cli import main

    out = tmp_path_factory.mktemp("cli_words")
    status = main([
        "transcribe", str(jfk), "--model", "tiny.en", "--device", "cpu", "--compute_type", "float32", "--beam_size", "None", "--best_of", "None",
        "--temperature", "0", "--word_timestamps", "True", "--output_dir", str(out), "--output_format", "json",
        "--verbose", "False", "--progress", "False",
    ])
    assert status == 0
    return json.loads((out / "jfk.json").read_text(encoding="utf-8"))


def transcribe(client, path, **kwargs):
    with open(path, "rb") as f:
        return client.audio.transcriptions.create(model="tiny.en", file=f, **kwargs)


def test_json_matches_the_cli_and_the_api(client, jfk, cli_outputs, tiny_en):
    result = transcribe(client, jfk, response_format="json", temperature=0.0)
    expected = json.loads(cli_outputs["json"])["text"].strip()
    assert result.text == expected
    assert result.text == tiny_en.transcribe(str(jfk), temperature=0.0).text.strip()
    assert "ask not what your country can do for you" in result.text
    assert result.usage.type == "duration" and result.usage.seconds == 11


def test_text_format(client, jfk, cli_outputs):
    text = transcribe(client, jfk, response_format="text")
    assert isinstance(text, str)
    assert text == json.loads(cli_outputs["json"])["text"].strip() + "\n"


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_equal_the_cli_files(client, jfk, cli_outputs, fmt):
    body = transcribe(client, jfk, response_format=fmt)
    assert body == cli_outputs[fmt]
    assert ("00:00:00,000 --> " if fmt == "srt" else "WEBVTT") in body


def test_verbose_json_segments_equal_the_cli_json(client, jfk, cli_outputs):
    result = transcribe(client, jfk, response_format="verbose_json")
    reference = json.loads(cli_outputs["json"])
    assert result.task == "transcribe"
    assert result.language == "english"
    assert result.duration == pytest.approx(11.0, abs=0.01)
    assert result.words is None
    assert len(result.segments) == len(reference["segments"]) > 0
    for got, want in zip(result.segments, reference["segments"]):
        assert (got.id, got.seek, got.start, got.end, got.text, got.tokens) == (
            want["id"], want["seek"], want["start"], want["end"], want["text"], want["tokens"]
        )
        assert got.avg_logprob == pytest.approx(want["avg_logprob"])
        assert got.no_speech_prob == pytest.approx(want["no_speech_prob"])


def test_word_timestamps_equal_the_cli(client, jfk, cli_words):
    result = transcribe(client, jfk, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    want = [(w["word"].strip(), w["start"], w["end"]) for s in cli_words["segments"] for w in s["words"]]
    assert [(w.word, w.start, w.end) for w in result.words] == want
    assert [w.word.strip(",.").lower() for w in result.words][:4] == ["and", "so", "my", "fellow"]
    assert all(w.end >= w.start for w in result.words)
    assert [s.text for s in result.segments] == [s["text"] for s in cli_words["segments"]]


def test_words_only_leaves_out_segments(client):
    result = transcribe(client, clip("libri_horizon"), response_format="verbose_json", timestamp_granularities=["word"])
    assert result.segments is None
    assert " ".join(w.word for w in result.words).lower().startswith("the horizon")


def test_stream_sends_segments_then_the_text(client, jfk, cli_outputs):
    events = list(transcribe(client, jfk, stream=True))
    assert events[-1].type == "transcript.text.done"
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    segments = [e.segment for e in deltas if getattr(e, "segment", None)]
    reference = json.loads(cli_outputs["json"])
    assert [s["text"] for s in segments] == [s["text"] for s in reference["segments"]]
    assert events[-1].text == reference["text"].strip()
    assert "".join(e.delta for e in deltas).strip() == reference["text"].strip()
    assert deltas[-1].progress == 1.0


def test_stream_delivers_segments_before_the_end(server):
    """On 84 s of audio (3 windows) the first segments arrive while the later windows are still being decoded."""
    import httpx

    arrivals = []
    with open(clip("real_concat"), "rb") as f, httpx.stream(
        "POST", f"{server.url}/v1/audio/transcriptions", files={"file": ("real_concat.flac", f)},
        data={"stream": "true", "include_formats[]": ["srt", "txt"]}, timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                arrivals.append((time.perf_counter(), json.loads(line[6:])))
    done_at, done = arrivals[-1]
    first_segment_at = next(t for t, e in arrivals if e.get("segment"))
    assert done["type"] == "transcript.text.done"
    assert "permission is hereby granted" in done["text"].lower()
    assert done["formats"]["srt"].startswith("1\n00:00:")
    assert done["formats"]["txt"].strip()
    assert done_at - first_segment_at > 0.2  # streamed as decoded, not buffered to the end
    progress = [e["progress"] for _, e in arrivals if "progress" in e]
    assert progress == sorted(progress) and progress[-1] == 1.0


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the client marks translations deprecated
def test_translation_needs_a_multilingual_model(client, jfk):
    import openai

    with open(jfk, "rb") as f, pytest.raises(openai.BadRequestError) as err:
        client.audio.translations.create(model="tiny.en", file=f)
    assert "English-only" in err.value.message


def test_models_and_health(client, server):
    import httpx

    ids = [m.id for m in client.models.list().data]
    assert ids[0] == "tiny.en" and "whisper-1" in ids
    assert client.models.retrieve("tiny.en").owned_by == "tingxie"
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["models"] == {"tiny.en": "ready"}


def test_whisper_1_means_the_default_model(client):
    result = client.audio.transcriptions.create(model="whisper-1", file=open(clip("libri_horizon"), "rb"))
    assert "horizon" in result.text.lower()


def test_request_ids_are_returned(client, server):
    import httpx

    raw = client.audio.transcriptions.with_raw_response.create(model="tiny.en", file=open(clip("libri_horizon"), "rb"))
    assert raw.headers["x-request-id"].startswith("req_")
    given = httpx.get(f"{server.url}/health", headers={"x-request-id": "my-trace-42"})
    assert given.headers["x-request-id"] == "my-trace-42"
    forged = httpx.get(f"{server.url}/health", headers={"x-request-id": 'x", "level": "critical'})
    assert forged.headers["x-request-id"].startswith("req_")


def test_openapi_schema_lists_the_endpoints(server):
    import httpx

    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/audio/transcriptions", "/v1/audio/translations", "/v1/models", "/health"} <= set(schema["paths"])
    form = schema["paths"]["/v1/audio/transcriptions"]["post"]
    assert "422" not in form["responses"] and "429" in form["responses"]


def test_serve_is_a_tingxie_command(capsys):
    """``tingxie serve`` is registered on the main CLI, and its help gives every option's default."""
    from tingxie.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", "--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for option in ("--host", "--port", "--model", "--api-key", "--max-upload-mb", "--workers", "--max-queue"):
        assert option in help_text
    assert "(default: 127.0.0.1)" in help_text and "(default: 25, as OpenAI)" in help_text
    args = build_parser().parse_args(["serve", "--port", "0", "--api-key", "sk-1", "--workers", "2"])
    from tingxie.server.cli import settings_from_args

    settings = settings_from_args(args)
    assert (settings.port, settings.api_keys, settings.workers, settings.max_queue) == (0, ("sk-1",), 2, 8)
    assert settings.compute_type == "auto"  # the fast engine (int8 on a CPU) unless asked otherwise


def test_compute_type_reaches_the_model_loader(monkeypatch):
    """``tingxie serve --compute-type int8`` loads int8 models (what keeps a 5-beam live stream in real time on 2 cores)."""
    import tingxie.api
    from tingxie.cli import build_parser
    from tingxie.errors import OptionError
    from tingxie.server.cli import settings_from_args
    from tingxie.server.models import default_loader
    from tingxie.server.settings import ServerSettings

    settings = settings_from_args(build_parser().parse_args(["serve", "--compute-type", "int8"]))
    calls = []
    monkeypatch.setattr(tingxie.api, "load_model", lambda name, **kwargs: calls.append((name, kwargs)) or "model")
    assert default_loader(settings)("tiny.en") == "model"
    assert calls == [("tiny.en", {"device": settings.device, "dtype": None, "cache_dir": None, "compute_type": "int8"})]
    with pytest.raises(OptionError, match="compute_type"):
        ServerSettings(compute_type="int4")
