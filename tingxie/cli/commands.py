"""What the CLI's sub-commands do, once their arguments are parsed."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TingxieError
from ..options import TranscribeOptions, build_options, temperature_schedule

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

_NOT_OPTIONS = {
    "command", "audio", "model", "model_dir", "device", "dtype", "fp16", "threads", "backend", "compute_type", "batch_size", "output_dir", "output_format",
    "verbose", "progress", "quiet", "highlight_words", "max_line_width", "max_line_count", "max_words_per_line",
    "temperature", "temperature_increment_on_fallback",
}


def options_from_args(args: dict[str, Any]) -> TranscribeOptions:
    """The same TranscribeOptions the API and server use, from parsed CLI arguments."""
    kwargs = {k: v for k, v in args.items() if k not in _NOT_OPTIONS}
    kwargs["temperature"] = temperature_schedule(args["temperature"], args["temperature_increment_on_fallback"])
    return build_options(**kwargs)


def _format_timestamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return (f"{h:02d}:" if h else "") + f"{m:02d}:{s:02d}.{ms:03d}"


class _ProgressBar:
    """A bar on stderr for one file, made at the first progress report (when the audio's length is known) and drawn
    after half a second, so a short file never flashes one; where not enabled (None: only on a terminal) nothing is
    drawn. Segment lines go through ``print_line``: the bar is cleared before each and drawn again after it."""

    def __init__(self, enabled: bool | None, name: str):
        from ..terminal import progress_enabled

        self.enabled, self.name, self.bar = progress_enabled(enabled, sys.stderr), name, None

    def report(self, done: float, total: float) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="s", desc=self.name, file=sys.stderr, leave=False, delay=0.5,
                            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]")
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def print_line(self, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line, file=sys.stdout)

    def close(self) -> None:
        if self.bar is not None:
            # cleared first: tqdm's close clears only a bar its own updates drew, and a quick file's bar may have been
            # drawn only again after a segment line (tqdm.write), which left it on screen at e.g. 94 %
            self.bar.clear()
            self.bar.close()


def transcribe_command(args: dict[str, Any]) -> int:
    """Transcribe each file; a failed file is named with its reason and the others still finish."""
    from ..writers import SubtitleOptions, write_result

    try:
        options = options_from_args(args)
        subtitle = SubtitleOptions(
            max_line_width=args["max_line_width"], max_line_count=args["max_line_count"],
            highlight_words=args["highlight_words"], max_words_per_line=args["max_words_per_line"],
        )
        if args["max_line_count"] and not args["max_line_width"]:
            warnings.warn("--max_line_count has no effect without --max_line_width", stacklevel=1)
        if args["max_words_per_line"] and args["max_line_width"]:
            warnings.warn("--max_words_per_line has no effect with --max_line_width", stacklevel=1)
        references = _diarization_ready(options, args["model_dir"])  # bad references or a missing speaker model: before any work
        # the first file is decoded while the model loads (PyAV and ONNX Runtime both release the GIL)
        from ..terminal import progress_enabled

        bar_shown = progress_enabled(args["progress"], sys.stderr)
        first_audio = _prefetch_audio(args["audio"][0], args["model"], bar_shown) if args["audio"] else None
        model = load_cli_model(args)
        if not model.is_multilingual and options.decoding.language not in (None, "en", "English", "english"):
            warnings.warn(f"{args['model']} is an English-only model; using English instead of {options.decoding.language!r}", stacklevel=1)
            options = build_options(**{**_flat(options), "language": "en"})
    except TingxieError as e:
        print(f"tingxie: error: {e}", file=sys.stderr)
        return 2

    output_dir = Path(args["output_dir"])
    failures: list[tuple[str, str]] = []
    for i, path in enumerate(args["audio"]):
        try:
            audio = _prefetched(first_audio, path) if i == 0 and first_audio is not None else path
            if options.diarize:
                result = _diarized_one(model, path, options, args, audio, references)
            else:
                result = _transcribe_one(model, path, options, args["verbose"], args["progress"], args.get("batch_size") or 0, audio)
            write_result(result.to_dict(), path, output_dir, args["output_format"], subtitle)
            if not result.text.strip():
                failures.append((path, "no speech detected (the outputs were written, empty)"))
        except TingxieError as e:
            failures.append((path, str(e)))
        except OSError as e:
            failures.append((path, f"{type(e).__name__}: {e}"))
    for path, reason in failures:
        print(f"tingxie: {path}: {reason}", file=sys.stderr)
    return 1 if failures else 0


def _diarized_one(model, path: str, options: TranscribeOptions, args: dict[str, Any], audio: Any, references: Any):
    """One file transcribed while its speaker turns are found beside it (the samples decoded once, shared)."""
    from ..audio import decode_audio
    from ..diarization import start_speakers

    samples = audio if hasattr(audio, "shape") else decode_audio(path)
    progress = args["progress"] if args["progress"] is not None else sys.stderr.isatty()  # None: auto, on a terminal
    with start_speakers(samples, options, progress=progress, references=references) as speakers:
        result = _transcribe_one(model, path, options, args["verbose"], args["progress"], args.get("batch_size") or 0, samples)
        return speakers.apply(model, result)


def _diarization_ready(options: TranscribeOptions, model_dir: str | None) -> Any:
    """With --diarize: the reference voices, read, and the speaker model, loaded (exported once); None otherwise."""
    if not options.diarize:
        return None
    from ..diarization import load_encoder
    from ..diarization.apply import settings_from_options

    references = settings_from_options(options).speaker_references
    load_encoder(model_dir)
    return references


def load_cli_model(args: dict[str, Any]):
    """The model the CLI's --model, --backend, --device, --dtype, --fp16, --compute_type and --threads ask for; the
    choice of engine is ``load_model``'s (one policy for the CLI, the API and the server)."""
    from ..api import choose_backend, load_model

    dtype = "float32" if not args["fp16"] and args["dtype"] == "auto" else args["dtype"]
    backend = choose_backend(args.get("backend", "auto"), args["device"], dtype)
    if backend == "torch" and args["threads"] > 0:
        import torch

        torch.set_num_threads(args["threads"])
    return load_model(args["model"], device=args["device"], dtype=dtype, cache_dir=args["model_dir"], compute_type=args.get("compute_type"),
                      backend=backend, threads=max(args["threads"], 0))


def _flat(options: TranscribeOptions) -> dict[str, Any]:
    from dataclasses import fields

    out = {f.name: getattr(options, f.name) for f in fields(options) if f.name != "decoding"}
    out.update({f.name: getattr(options.decoding, f.name) for f in fields(options.decoding)})
    return out


def _prefetch_audio(path: str, model_name: str, bar_shown: bool) -> Future:
    from concurrent.futures import ThreadPoolExecutor

    from ..audio import decode_audio  # imported here, before the main thread goes on to import the model's runtime

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(_decode_and_prepare, decode_audio, path, model_name, bar_shown)
    pool.shutdown(wait=False)
    return future


# The first file is decoded beside the model's loading up to this long; a longer one is read as a stream, in bounded
# memory, as every other file is.
PREFETCH_SECONDS = 300.0


def _decode_and_prepare(decode_audio: Callable[..., Any], path: str, model_name: str, bar_shown: bool) -> Any:
    """The file's samples (None when it is longer than PREFETCH_SECONDS); then, still beside the model's loading,
    what the first window needs next: the progress bar's module and the vocabulary of a model known by name (~70 ms
    of Python work on the main thread otherwise)."""
    from ..audio import AudioTooLongError
    from ..tokenizer import get_tokenizer
    from ..weights import OFFICIAL_MODELS

    try:
        samples = decode_audio(path, max_seconds=PREFETCH_SECONDS)
    except AudioTooLongError:  # its header says so before any decoding, or the decoder stops there
        samples = None
    if bar_shown:  # tqdm's import (~65 ms, most of it importlib.metadata) only where a bar will be drawn
        import tqdm  # noqa: F401

    if model_name in OFFICIAL_MODELS:  # the tokenizer's own cache: the model asks for the same one (or its language's)
        dims = OFFICIAL_MODELS[model_name].dims
        get_tokenizer(dims.is_multilingual, num_languages=dims.num_languages)
    return samples


def _prefetched(future: Future, path: str) -> Any:
    """The first file's samples; its path where they are too few (so that the error names the file as usual) or
    where it is long (read as a stream)."""
    from ..api import MIN_AUDIO_SECONDS
    from ..audio import SAMPLE_RATE

    samples = future.result()  # a decoding error is raised here, inside the caller's per-file handling
    return samples if samples is not None and samples.size >= MIN_AUDIO_SECONDS * SAMPLE_RATE else path


def _transcribe_one(model, path: str, options: TranscribeOptions, verbose: bool, progress: bool | None, batch_size: int = 0, audio: Any = None):
    audio = path if audio is None else audio
    bar = _ProgressBar(progress, Path(path).name)
    try:
        def on_progress(done: int, total: int) -> None:
            bar.report(done / 100, total / 100)

        if batch_size > 0:
            from ..batched import iter_transcribe_batched

            info, segments_iter = iter_transcribe_batched(model, audio, options, batch_size=batch_size, on_progress=on_progress)
        else:
            info, segments_iter = model.iter_transcribe(audio, options, on_progress=on_progress)
        segments = []
        for segment in segments_iter:
            segments.append(segment)
            if verbose:
                line = f"[{_format_timestamp(segment.start)} --> {_format_timestamp(segment.end)}] {segment.text}"
                bar.print_line(line)
    finally:
        bar.close()
    return model.assemble(info, segments)


def models_command(model_dir: str | None) -> int:
    from ..weights import list_models

    rows = list_models(cache_dir=model_dir)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        size = f"{r['size'] / 1e6:.0f} MB" if r.get("size") else ""
        print(f"{r['name']:<{width}}  {r['source']:<12}  {size:>8}  {r.get('path') or ''}")
    return 0


def languages_command() -> int:
    from ..tokenizer import LANGUAGES

    for code, name in LANGUAGES.items():
        print(f"{code}\t{name}")
    return 0


# The demo's recording: LibriSpeech dev-clean 2412-153948-0000 (CC BY 4.0; see tingxie/assets/ATTRIBUTION) and what its
# reader says, as LibriSpeech transcribed it
SAMPLE_FILE = "librispeech_2412-153948-0000.flac"
SAMPLE_TITLE = "LibriSpeech dev-clean 2412-153948-0000, read by a LibriVox volunteer (CC BY 4.0)"
SAMPLE_TEXT = ("IF THE READER WILL EXCUSE ME I WILL SAY NOTHING OF MY ANTECEDENTS NOR OF THE CIRCUMSTANCES WHICH LED ME TO "
               "LEAVE MY NATIVE COUNTRY THE NARRATIVE WOULD BE TEDIOUS TO HIM AND PAINFUL TO MYSELF")


def sample_path() -> Path:
    """The recording shipped with the package for ``tingxie demo``: 11.7 s of human speech, two sentences."""
    from importlib.resources import files

    return Path(str(files("tingxie") / "assets" / SAMPLE_FILE))


def demo_command(model_name: str) -> int:
    """Transcribe the bundled recording with the default engine; print its segments, the timings and how the text
    compares with what was said."""
    import time

    from ..api import load_model
    from ..normalizers import english_normalize
    from ..terminal import BOLD, DIM, styled

    out = sys.stdout
    try:
        started = time.perf_counter()
        model = load_model(model_name)
        loaded = time.perf_counter()
        result = model.transcribe(str(sample_path()), temperature=0.0)
        done = time.perf_counter()
    except TingxieError as e:
        print(f"tingxie: error: {e}", file=sys.stderr)
        return 2
    print(f"{SAMPLE_TITLE}, {result.duration:.1f} s", file=out)
    print(styled(f"model {model_name} on {model.description}", DIM, out), file=out)
    for s in result.segments:
        print(f"{styled(f'[{_format_timestamp(s.start)} --> {_format_timestamp(s.end)}]', DIM, out)} {styled(s.text.strip(), BOLD, out)}", file=out)
    seconds = done - loaded
    print(f"{result.duration:.1f} s of speech transcribed in {seconds:.2f} s: real-time factor {seconds / result.duration:.3f}, "
          f"{result.duration / seconds:.0f}x faster than real time (model loaded in {loaded - started:.2f} s)", file=out)
    if english_normalize(result.text) == english_normalize(SAMPLE_TEXT):
        print("word for word what the reader said (LibriSpeech's transcript)", file=out)
    else:
        print(f"LibriSpeech's transcript: {SAMPLE_TEXT.capitalize()}", file=out)
    return 0
