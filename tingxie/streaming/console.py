"""``tingxie stream``: run a StreamingTranscriber over the microphone or a file, print partial and final lines."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import IO

from ..errors import TingxieError
from ..terminal import styled
from .events import StreamEvent

CLEAR_LINE = "\r\x1b[2K"
GREY = "\x1b[90m"  # partial lines, on a terminal that takes colour


def clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours}:" if hours else "") + f"{minutes:02d}:{secs:05.2f}"


def final_line(event: StreamEvent, timestamps: bool) -> str:
    if not timestamps or event.start is None:
        return event.text
    return f"[{clock(event.start)} --> {clock(event.end or event.start)}] {event.text}"


class LinePrinter:
    """Final lines stay; the partial line is rewritten in place (terminals only). Finals also go to a transcript file."""

    def __init__(self, out: IO[str], *, partials: bool, timestamps: bool, transcript: IO[str] | None = None) -> None:
        self.out = out
        self.partials = partials
        self.timestamps = timestamps
        self.transcript = transcript
        self._partial_shown = False

    def show(self, event: StreamEvent) -> None:
        if event.type == "final":
            line = final_line(event, self.timestamps)
            self.out.write((CLEAR_LINE if self._partial_shown else "") + line + "\n")
            self._partial_shown = False
            if self.transcript is not None:
                self.transcript.write(line + "\n")
                self.transcript.flush()
                os.fsync(self.transcript.fileno())  # a crash or Ctrl-C loses nothing already final
        elif self.partials:
            width = shutil.get_terminal_size().columns - 1
            text = event.text if len(event.text) <= width else "…" + event.text[-(width - 1) :]  # a wrapped line can't be rewritten
            self.out.write(CLEAR_LINE + (styled(text, GREY, self.out) if text else ""))  # grey unless NO_COLOR
            self._partial_shown = bool(text)
        self.out.flush()

    def close(self) -> None:
        if self._partial_shown:
            self.out.write(CLEAR_LINE)
            self.out.flush()


def stream_command(args: argparse.Namespace) -> int:
    try:
        return _stream(args)
    except TingxieError as e:
        print(f"tingxie stream: error: {e}", file=sys.stderr)
        return 1


def _stream(args: argparse.Namespace) -> int:
    from .options import StreamOptions

    options = StreamOptions(language=args.language, task=args.task, step_s=args.step, pause_s=args.pause, vad=args.vad == "on", policy=args.policy,
                            beam_size=None if args.beam_size == 1 else args.beam_size)  # 1 beam is greedy; StreamOptions rejects < 1
    from ..api import choose_backend, load_model
    from .audio_in import microphone_chunks, realtime_chunks
    from .transcriber import StreamingTranscriber

    backend = choose_backend("auto", args.device, None)
    if args.threads > 0 and backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
    if args.simulate_realtime:
        from ..audio import decode_audio

        audio = decode_audio(args.simulate_realtime)  # before the model: a bad file fails fast
    model = load_model(args.model, device=args.device, cache_dir=args.model_dir, compute_type=args.compute_type, backend=backend,
                       threads=max(args.threads, 0) if backend == "onnx" else 0)
    stream = StreamingTranscriber(model, options)
    if args.simulate_realtime:
        chunks = realtime_chunks(audio, args.chunk, args.speed)
        print(f"playing {args.simulate_realtime} ({len(audio) / 16000:.1f} s) at {args.speed:g}x real time", file=sys.stderr)
    else:
        chunks = microphone_chunks(_device(args.input_device), args.chunk)
    partials = args.partials == "on" or (args.partials == "auto" and sys.stdout.isatty())
    transcript = open(args.output, "a", encoding="utf-8") if args.output else None  # noqa: SIM115 - closed below
    printer = LinePrinter(sys.stdout, partials=partials, timestamps=args.timestamps == "on", transcript=transcript)
    try:
        try:
            for i, chunk in enumerate(chunks):
                if i == 0 and not args.simulate_realtime:
                    print("listening (Ctrl-C to stop)", file=sys.stderr)
                for event in stream.accept(chunk):
                    printer.show(event)
        except KeyboardInterrupt:
            pass  # the usual way to stop: finalise what was heard
        finally:
            chunks.close()  # stops the microphone
        for event in stream.finish():
            printer.show(event)
    finally:
        printer.close()
        if transcript is not None:
            transcript.close()
    return 0


def _device(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value
