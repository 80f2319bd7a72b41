"""The batch driver: decide what is left to do, feed the pool, write results, keep the state file.

The driver alone writes outputs (atomically, through ``tingxie.writers``) and records each file in the
state file only after its outputs are in place, so a job killed at any instant and run again redoes
at most the files that were in flight, and never leaves a half-written transcript.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import TingxieError
from ..options import TranscribeOptions, build_options
from ..weights.cache import is_disk_error
from ..writers import FORMATS, SubtitleOptions, write_result
from .inputs import BatchItem, probe_duration, walk_input
from .pool import Completion, WorkerPool
from .state import STATE_FILE_NAME, FileRecord, JobState, write_error
from .work import WorkSpec

DEFAULT_RETRIES = 2
# tingxie.writers' temporary files, left behind only by a kill mid-write: ".<name>.<32 hex>.tmp"
_STALE_TEMP = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


@dataclass(frozen=True)
class BatchSummary:
    """What a job did. ``failed`` pairs each failed path with its reason."""

    total: int
    done: int  # transcribed by this run
    skipped: int  # already done by an earlier run with the same model and options
    failed: tuple[tuple[str, str], ...] = ()
    no_speech: tuple[str, ...] = ()  # done, but the transcript is empty
    audio_seconds: float = 0.0  # audio transcribed by this run
    wall_seconds: float = 0.0
    workers_lost: int = 0
    interrupted: bool = False
    state_file: str = ""
    pool: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    @property
    def audio_hours_per_hour(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def report(self) -> str:
        """The summary line and the failure report, one failed file a line with its reason."""
        head = "interrupted" if self.interrupted else "finished"
        lines = [
            f"tingxie batch: {head}: {self.total} files: {self.done} transcribed, {self.skipped} already done, {len(self.failed)} failed"
            + (f", {self.total - self.done - self.skipped - len(self.failed)} left" if self.interrupted else "")
            + f"; {self.audio_seconds / 3600:.3f} h of audio in {self.wall_seconds:.1f} s"
            + (f" ({self.audio_hours_per_hour:.1f} audio hours per hour)" if self.audio_seconds else "")
            + (f"; {self.workers_lost} worker{'s' if self.workers_lost != 1 else ''} lost, their files retried" if self.workers_lost else "")
        ]
        if self.no_speech:
            lines.append(f"tingxie batch: no speech detected in {len(self.no_speech)} file(s) (empty outputs written): " + ", ".join(self.no_speech[:10])
                         + (" ..." if len(self.no_speech) > 10 else ""))
        for path, reason in self.failed:
            lines.append(f"tingxie batch: failed: {path}: {reason}")
        if self.interrupted:
            lines.append("tingxie batch: run the same command again to continue where it stopped")
        if self.state_file:
            lines.append(f"tingxie batch: job state: {self.state_file}")
        return "\n".join(lines)


@dataclass
class _Progress:
    """Overall progress on stderr: a bar over audio seconds (so the ETA weighs long files right)."""

    enabled: bool
    files: int
    audio_total: float
    done: int = 0
    failed: int = 0
    bar: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=self.audio_total, unit="s", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")
            self._refresh(0.0)

    def _refresh(self, advance: float) -> None:
        if self.bar is None:
            return
        self.bar.set_description_str(
            f"batch: {self.done + self.failed}/{self.files} files" + (f" ({self.failed} failed)" if self.failed else "")
            + f", {(self.bar.n + advance) / 3600:.3f}/{self.audio_total / 3600:.3f} h audio", refresh=False)
        self.bar.update(min(advance, max(0.0, self.bar.total - self.bar.n)))  # a probed length may be short

    def advance(self, seconds: float, ok: bool) -> None:
        self.done += ok
        self.failed += not ok
        self._refresh(seconds)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _remove_stale_temp_files(output_dir: Path) -> None:
    for entry in output_dir.iterdir():
        if _STALE_TEMP.match(entry.name) and entry.is_file():
            try:
                entry.unlink(missing_ok=True)
            except OSError:
                pass  # tidying only: a read-only folder fails later, with its own message


def _name_collisions(items: list[BatchItem]) -> dict[str, str]:
    """Files whose outputs would overwrite another's (``OUT/<stem>.<ext>``): path -> the reason."""
    first: dict[str, str] = {}
    clashes = {}
    for item in items:
        owner = first.setdefault(item.stem, item.path)
        if owner != item.path:
            clashes[item.path] = f"its outputs ({item.stem}.*) would overwrite those of {owner}; rename one or transcribe it in another job"
    return clashes


def run_items(
    items: list[BatchItem], pool: WorkerPool, output_dir: str | os.PathLike, *, spec: WorkSpec, output_format: str = "all",
    subtitle: SubtitleOptions | None = None, retries: int = DEFAULT_RETRIES, state_file: str | os.PathLike | None = None,
    progress: bool = True, verbose: bool = False,
) -> BatchSummary:
    """Transcribe ``items`` on ``pool`` (not yet started) into ``output_dir``, resuming from the state file."""
    if output_format not in FORMATS:
        from ..errors import OptionError

        raise OptionError(f"unknown output format {output_format!r}; expected one of {', '.join(FORMATS)}")
    if retries < 0:
        from ..errors import OptionError

        raise OptionError(f"retries must be >= 0, got {retries}")
    subtitle = subtitle or SubtitleOptions()
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error("the output folder", out, e) from e
    state_path = Path(state_file) if state_file else out / STATE_FILE_NAME
    key = spec.fingerprint(output_format, subtitle)
    started = time.monotonic()
    with JobState(state_path) as state:
        _remove_stale_temp_files(out)
        skipped = [i for i in items if state.is_done(i.path, key, out)]
        done_paths = {i.path for i in skipped}
        todo = [i for i in items if i.path not in done_paths]
        failed: list[tuple[str, str]] = []
        for path, reason in _name_collisions(items).items():
            if path not in done_paths:
                state.record(FileRecord(path, "failed", key, error=reason, attempts=0))
                failed.append((path, reason))
        failed_paths = {path for path, _ in failed}
        todo = [i for i in todo if i.path not in failed_paths]
        common = {"total": len(items), "skipped": len(skipped), "state_file": str(state_path)}
        if not todo:
            return BatchSummary(done=0, failed=tuple(failed), wall_seconds=time.monotonic() - started, **common)
        durations = [i.duration if i.duration is not None else (probe_duration(i.path) if progress else None) for i in todo]
        bar = _Progress(progress, len(todo), sum(d or 0.0 for d in durations))
        attempts = [0] * len(todo)
        # longest first, where lengths are known: a long file started last would leave the other workers idle
        queue = deque(sorted(range(len(todo)), key=lambda t: -(durations[t] or 0.0)))
        done, audio_seconds, no_speech, interrupted = 0, 0.0, [], False

        def finish(c: Completion) -> None:
            nonlocal done, audio_seconds
            item = todo[c.task]
            if c.ok:
                try:
                    written = write_result(c.payload["result"], item.path, out, output_format, subtitle)
                except OSError as e:
                    if is_disk_error(e):  # every file would fail the same way: stop the job, its state says what is done
                        raise write_error(f"the outputs of {item.path} into", out, e) from e
                    c = Completion(c.task, reason=f"cannot write the outputs: {e}", permanent=True)
                except TingxieError as e:
                    c = Completion(c.task, reason=f"cannot write the outputs: {e}", permanent=True)
                else:
                    duration = float(c.payload.get("duration") or 0.0)
                    state.record(FileRecord(item.path, "done", key, tuple(p.name for p in written), duration,
                                            attempts=attempts[c.task], worker=c.payload.get("worker")))
                    done += 1
                    audio_seconds += duration
                    text = c.payload["result"].get("text", "").strip()
                    if not text:
                        no_speech.append(item.path)
                    if verbose:
                        bar.write(f"{item.path}: {text}")
                    bar.advance(durations[c.task] or duration, ok=True)
                    return
            # the report names the file already: drop it from the front of the reason
            c = replace(c, reason=c.reason[len(item.path):].lstrip(": ") if c.reason.startswith(item.path) else c.reason)
            will_retry = not c.permanent and attempts[c.task] <= retries
            state.attempt_failed(item.path, attempts[c.task], c.reason, will_retry)
            if will_retry:
                queue.append(c.task)  # to the back: another worker is likely to take it
                return
            reason = c.reason if attempts[c.task] == 1 else f"{c.reason} (after {attempts[c.task]} attempts)"
            state.record(FileRecord(item.path, "failed", key, error=reason, attempts=attempts[c.task]))
            failed.append((item.path, reason))
            bar.advance(durations[c.task] or 0.0, ok=False)

        try:
            pool.limit(len(todo))  # no idle workers loading models for nothing
            pool.start()
            while queue or pool.busy():
                while queue and pool.free_slots() > 0:
                    task = queue.popleft()
                    attempts[task] += 1
                    pool.submit(task, todo[task])
                for completion in pool.wait(0.5):
                    finish(completion)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            pool.close()
        return BatchSummary(
            done=done, failed=tuple(failed), no_speech=tuple(no_speech), audio_seconds=audio_seconds,
            wall_seconds=time.monotonic() - started, workers_lost=getattr(pool, "lost", 0), interrupted=interrupted,
            pool=pool.describe(), **common,
        )


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_pool_shape(device: str, workers: int | None, threads: int, files: int) -> tuple[int, int]:
    """(workers, torch threads each): one worker per GPU on a GPU machine; on CPU the cores shared out,
    one thread per worker unless ``threads`` says otherwise. Never more workers than files."""
    cores = available_cores()
    if workers is None:
        workers = max(1, cores // threads) if threads > 0 else cores
        from ..api import gpu_visible

        if (device.startswith("cuda") or device == "auto") and gpu_visible():
            import torch

            if torch.cuda.is_available():
                workers = 1 if ":" in device else torch.cuda.device_count()
    workers = max(1, min(workers, files))
    return workers, threads if threads > 0 else max(1, cores // workers)


def run(
    input: str | os.PathLike, output_dir: str | os.PathLike, *, output_format: str = "all", model: str = "tiny.en",
    device: str = "auto", dtype: str = "auto", model_dir: str | None = None, threads: int = 0, workers: int | None = None,
    ray: str | None = None, ray_cpus_per_worker: float = 1.0, ray_gpus_per_worker: float = 0.0, retries: int = DEFAULT_RETRIES,
    options: TranscribeOptions | None = None, subtitle: SubtitleOptions | None = None, state_file: str | os.PathLike | None = None,
    progress: bool = True, verbose: bool = False, backend: str = "auto", compute_type: str = "auto", **transcribe_options: Any,
) -> BatchSummary:
    """Transcribe every file of ``input`` (a folder, a glob pattern or a manifest) into ``output_dir``.

    Outputs are named as ``tingxie transcribe`` names them (``<output_dir>/<stem>.<ext>``). Files done by
    an earlier run with the same model and options are skipped, so calling this again after a crash or
    Ctrl-C continues the job. Transcription options are given either as ``options`` or as keyword
    arguments named as in ``model.transcribe`` (``language=``, ``beam_size=``, ``word_timestamps=`` ...).

    ``workers`` local processes (default: one per core, or per GPU) each load the model once; with
    ``ray`` (a cluster address, or 'auto') the job runs on Ray actors instead (default: the whole cluster).
    A file that fails is retried up to ``retries`` times unless its error is permanent (undecodable
    audio); the summary lists every failed file with its reason, and is ``ok`` when none failed.
    """
    if options is None:
        options = build_options(**transcribe_options)
    elif transcribe_options:
        from ..errors import OptionError

        raise OptionError("give either an options object or keyword options, not both")
    if workers is not None and workers < 1:
        from ..errors import OptionError

        raise OptionError(f"workers must be >= 1, got {workers}")
    items = walk_input(input)
    spec = WorkSpec(model=str(model), device=device, dtype=dtype, model_dir=model_dir, threads=threads, backend=backend,
                    compute_type=compute_type, options=options)
    if ray:
        from .ray_pool import RayPool

        pool: WorkerPool = RayPool(spec, ray, min(workers, len(items)) if workers else None,
                                   cpus_per_worker=ray_cpus_per_worker, gpus_per_worker=ray_gpus_per_worker)
    else:
        from .local import LocalPool

        size, per_worker = local_pool_shape(device, workers, threads, len(items))
        pool = LocalPool(replace(spec, threads=per_worker), size)
    return run_items(items, pool, output_dir, spec=spec, output_format=output_format, subtitle=subtitle or SubtitleOptions(),
                     retries=retries, state_file=state_file, progress=progress, verbose=verbose)
