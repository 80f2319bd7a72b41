"""The ``tingxie serve`` sub-command: its arguments (``add_serve_parser``) and what it does (``serve_command``).

Importing this module is cheap (no FastAPI, no torch), so the main CLI can always register the command.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..options import COMPUTE_TYPES

# API keys may come from the environment, so they don't show in `ps` (comma-separated).
API_KEYS_ENV = "TINGXIE_API_KEYS"


def _optional_int(value: str) -> int | None:
    return None if value.strip().lower() == "none" else int(value)


def _optional_float(value: str) -> float | None:
    return None if value.strip().lower() == "none" else float(value)


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the main parser's sub-parsers; returns the new parser."""
    p = subparsers.add_parser(
        "serve",
        help="serve the OpenAI-compatible transcription API and a web page",
        description="An OpenAI-compatible speech-to-text server (POST /v1/audio/transcriptions, /v1/audio/translations) "
        "with a web page at /. Point the official openai client at http://HOST:PORT/v1.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 exposes the server to the network (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: 8000)")
    p.add_argument("--model", default="tiny.en", help="the default model, loaded at start (default: tiny.en, embedded)")
    p.add_argument("--extra-model", action="append", default=[], metavar="NAME", dest="extra_models",
                   help="another model requests may name, loaded on first use (repeatable)")
    p.add_argument("--model-dir", default=None, help="cache folder for downloaded models (default: $TINGXIE_CACHE or ~/.cache/tingxie)")
    p.add_argument("--device", default="auto", help="torch device: cpu, cuda, mps or auto (default: auto)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"], help="precision (default: auto)")
    p.add_argument("--compute-type", default="auto", choices=COMPUTE_TYPES, dest="compute_type",
                   help="auto runs the fast engine (ONNX Runtime with int8 weights on a CPU, PyTorch on a GPU) for files and live "
                        "captions; float32 answers with the reference's outputs; int8 forces int8; default computes in --dtype "
                        "(default: auto)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's choice (default: 0)")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY", dest="api_keys",
                   help=f"require 'Authorization: Bearer KEY' on /v1 (repeatable; also ${API_KEYS_ENV}, comma-separated)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload accepted, in MB; larger gets 413 (default: 25, as OpenAI)")
    p.add_argument("--workers", type=int, default=1, help="transcriptions run at once, each on its own thread (default: 1)")
    p.add_argument("--max-queue", type=int, default=8, help="requests waiting for a worker before new ones get 429 (default: 8)")
    p.add_argument("--beam-size", type=_optional_int, default=5,
                   help="beam search width at temperature 0; None decodes greedily (default: 5, as the CLI)")
    p.add_argument("--best-of", type=_optional_int, default=5, help="samples drawn at temperature > 0 (default: 5, as the CLI)")
    p.add_argument("--vad-filter", action="store_true", dest="vad_filter",
                   help="transcribe only the speech the Silero VAD finds, skipping long pauses (as transcribe --vad_filter True; default: off)")
    p.add_argument("--max-streams", type=int, default=4, dest="max_streams",
                   help="live streams (/v1/realtime) served at once; one more is refused with an error event (default: 4)")
    p.add_argument("--stream-idle-timeout", type=float, default=30.0, dest="stream_idle_timeout",
                   help="seconds a live stream may send nothing (no audio, no end) before it is closed with an error event (default: 30)")
    p.add_argument("--max-stream-lag", type=float, default=10.0, dest="max_stream_lag",
                   help="seconds of a live stream's audio waiting to be decoded beyond which it is closed with an error event; "
                        "from 2 s behind, it decodes less often, then greedily, to catch up and sends lag events (default: 10)")
    p.add_argument("--policy", default="alignatt", choices=["alignatt", "local-agreement"], dest="stream_policy",
                   help="when live-stream words become final: alignatt commits a word once Whisper's attention has moved past "
                        "it (one decode), local-agreement once two decodes agree on it (later); a stream may ask with "
                        "?policy= (default: alignatt)")
    p.add_argument("--shutdown-timeout", type=float, default=20.0,
                   help="seconds SIGTERM or Ctrl-C lets in-flight requests finish; then their work is cancelled (default: 20)")
    limits = p.add_argument_group("limits (see the README's 'Exposing the server safely')")
    limits.add_argument("--max-audio-seconds", type=_optional_float, default=3 * 3600.0,
                        help="longest audio a request may hold: refused from its declared duration before decoding, and "
                             "decoding stops at the limit if the header lied (413); None for no limit (default: 10800, 3 h)")
    limits.add_argument("--max-request-seconds", type=_optional_float, default=3600.0,
                        help="wall-clock limit of one request from its admission; its work stops at the next 30-s window "
                             "past it (504); None for no limit (default: 3600)")
    limits.add_argument("--read-timeout", type=float, default=10.0,
                        help="seconds a connection has to send its request head, and the longest pause in a request body (default: 10)")
    limits.add_argument("--upload-timeout", type=float, default=300.0, help="seconds a request body has to arrive whole; then 408 (default: 300)")
    limits.add_argument("--keep-alive-timeout", type=float, default=5.0, help="seconds an idle keep-alive connection stays open (default: 5)")
    limits.add_argument("--max-connections", type=int, default=64,
                        help="connections (HTTP and WebSocket) served at once; more get 503 (default: 64)")
    limits.add_argument("--max-header-bytes", type=int, default=16 * 1024, help="largest request head accepted; larger gets 400 (default: 16384)")
    limits.add_argument("--allowed-origins", default="", metavar="ORIGINS",
                        help="comma-separated origins (https://app.example) whose web pages may open the WebSockets besides "
                             "the server's own; * for any (default: none: same origin only)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="level of the JSON logs on stderr (default: info)")
    return p


def register(subparsers: Any) -> None:
    """The main CLI's hook: add ``serve`` with its handler."""
    add_serve_parser(subparsers).set_defaults(handler=serve_command)


def settings_from_args(args: argparse.Namespace | dict[str, Any]) -> Any:
    """The ServerSettings for parsed ``serve`` arguments (keys from --api-key and the environment)."""
    from .settings import ServerSettings

    a = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    env_keys = [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]
    return ServerSettings(
        host=a["host"], port=a["port"], model=a["model"], extra_models=tuple(a["extra_models"]), device=a["device"],
        dtype=None if a["dtype"] == "auto" else a["dtype"], compute_type=a.get("compute_type", "auto"), model_dir=a["model_dir"],
        api_keys=tuple(dict.fromkeys([*a["api_keys"], *env_keys])),
        max_upload_mb=a["max_upload_mb"], workers=a["workers"], max_queue=a["max_queue"], beam_size=a["beam_size"],
        best_of=a["best_of"], vad_filter=a.get("vad_filter", False), max_streams=a.get("max_streams", 4),
        stream_idle_timeout=a.get("stream_idle_timeout", 30.0), max_stream_lag=a.get("max_stream_lag", 10.0),
        stream_policy=a.get("stream_policy", "alignatt"), shutdown_timeout=a["shutdown_timeout"], log_level=a["log_level"],
        max_audio_seconds=a.get("max_audio_seconds", 3 * 3600.0), max_request_seconds=a.get("max_request_seconds", 3600.0),
        read_timeout=a.get("read_timeout", 10.0), upload_timeout=a.get("upload_timeout", 300.0),
        keep_alive_timeout=a.get("keep_alive_timeout", 5.0), max_connections=a.get("max_connections", 64),
        max_header_bytes=a.get("max_header_bytes", 16 * 1024),
        allowed_origins=tuple(o.strip() for o in (a.get("allowed_origins") or "").split(",") if o.strip()),
    )


def serve_command(args: argparse.Namespace | dict[str, Any]) -> int:
    """Run the server in the foreground; returns the exit status."""
    from ..errors import TingxieError

    try:
        settings = settings_from_args(args)
    except TingxieError as e:
        print(f"tingxie serve: error: {e}", file=sys.stderr)
        return 2
    threads = (vars(args) if isinstance(args, argparse.Namespace) else args).get("threads", 0)
    from ..api import choose_backend

    if threads and threads > 0 and choose_backend("auto", settings.device, settings.dtype) == "torch":  # ONNX Runtime takes one per core
        import torch

        torch.set_num_threads(threads)
    if not settings.auth_required and settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"tingxie serve: warning: listening on {settings.host} without --api-key; anyone who can reach it can use it", file=sys.stderr)
    from .runner import run

    return run(settings)


def main(argv: list[str] | None = None) -> int:
    """``python -m tingxie.server``: the same as ``tingxie serve``."""
    parser = argparse.ArgumentParser(prog="python -m tingxie.server")
    sub = parser.add_subparsers(dest="command", required=True, prog="tingxie")  # usage reads "tingxie serve ..."
    add_serve_parser(sub)
    return serve_command(parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)]))
