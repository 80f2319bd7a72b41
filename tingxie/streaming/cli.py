"""The ``tingxie stream`` sub-command's arguments. Importing this is cheap (argparse and the options module); the work is in console.py."""

from __future__ import annotations

import argparse
from typing import Any

from ..options import COMPUTE_TYPES


def _positive(kind):
    def parse(value: str):
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return number

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def add_stream_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "stream",
        help="live transcription from the microphone (or a file played in real time)",
        description="Transcribe as audio arrives: partial text (may still change) is shown on one line that is "
        "overwritten, final text stays. From the default microphone unless --simulate-realtime FILE is given. "
        "Ctrl-C stops and finalises what was heard.",
    )
    p.add_argument("--simulate-realtime", metavar="FILE", default=None,
                   help="play FILE (any format ffmpeg decodes) at real-time speed instead of recording (default: the microphone)")
    p.add_argument("--speed", type=_positive(float), default=1.0, help="with --simulate-realtime, play this many times faster than real time (default: 1.0)")
    p.add_argument("--input-device", default=None, help="sounddevice input device, by number or name (default: the system's default input)")
    p.add_argument("--model", default="tiny.en", help="model name or path (default: tiny.en, embedded)")
    p.add_argument("--model_dir", default=None, help="cache folder for downloaded models (default: $TINGXIE_CACHE or ~/.cache/tingxie)")
    p.add_argument("--device", default="auto", help="torch device: cpu, cuda, mps or auto (default: auto)")
    p.add_argument("--compute_type", default="auto", choices=COMPUTE_TYPES,
                   help="int8 runs the linear layers with int8 weights on the CPU (each decode about 1.5x faster, what keeps beam search "
                        "in real time on 2 cores); default computes in float32; auto is int8 on a CPU, default on a GPU (default: auto)")
    p.add_argument("--beam_size", type=int, default=5,
                   help="beams of each decode; 1 decodes greedily (faster, less accurate: streamed WER ~22%% greedy vs 16.1%% with "
                        "5 beams on 2 cores, bench/realtime.py) (default: 5)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads; 0 keeps torch's choice (one per core: on 2 cores the final-word latency is "
                        "1.3 s instead of 2.1 s with one thread, bench/realtime.py) (default: 0)")
    p.add_argument("--language", default=None, help="language spoken (code or name); None: English for .en models, else detected from the first speech "
                                                    "(default: None)")
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"],
                   help="transcribe, or translate to English (multilingual models) (default: transcribe)")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="append every final line to FILE as it is committed, flushed to disk at once (default: none)")
    p.add_argument("--timestamps", choices=["on", "off"], default="on", help="start and end time in front of each final line (default: on)")
    p.add_argument("--partials", choices=["auto", "on", "off"], default="auto",
                   help="show the partial line; auto shows it only on a terminal (default: auto)")
    p.add_argument("--policy", default="alignatt", choices=["alignatt", "local-agreement"],
                   help="when words become final: alignatt commits a word from one decode once Whisper's attention has moved "
                        "past it (sooner), local-agreement once two successive decodes agree on it (default: alignatt)")
    p.add_argument("--step", type=_positive(float), default=0.5, help="seconds of new audio between decodes (default: 0.5)")
    p.add_argument("--pause", type=_positive(float), default=0.5, help="seconds of silence that finalise what was said (default: 0.5)")
    p.add_argument("--vad", choices=["on", "off"], default="on", help="Silero voice activity detection to skip silence and finalise at pauses (default: on)")
    p.add_argument("--chunk", type=_positive(float), default=0.1, help="seconds of audio per microphone or file chunk (default: 0.1)")
    return p


def register(subparsers: Any) -> None:
    """The main CLI's hook: add ``stream`` with its handler."""
    add_stream_parser(subparsers).set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .console import stream_command

    return stream_command(args)
