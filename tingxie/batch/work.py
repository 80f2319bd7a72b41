"""What one worker does: load the model once, then transcribe file after file into result dicts.

The same ``Transcriber`` runs in a local worker process and in a Ray actor. Outcomes are plain,
picklable tuples so they cross process and node boundaries unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from typing import Any

from ..errors import TingxieError
from ..options import TranscribeOptions

# Outcome kinds a worker reports for a file.
OK, ERROR = "ok", "error"


@dataclass(frozen=True)
class WorkSpec:
    """Everything a worker needs to build its transcriber: the model to load and the options to apply."""

    model: str = "tiny.en"
    device: str = "auto"
    dtype: str = "auto"
    model_dir: str | None = None
    threads: int = 0  # CPU threads per worker; 0 lets the pool decide
    backend: str = "auto"  # as load_model's: ONNX Runtime on a CPU, PyTorch on a GPU
    compute_type: str = "auto"  # as load_model's: int8 on a CPU; float32 is the reference switch
    options: TranscribeOptions = field(default_factory=TranscribeOptions)

    def fingerprint(self, *extra: Any) -> str:
        """Stable hash of what decides the outputs: the model and the options (and ``extra``, such as the
        formats) that differ from their defaults, so a release that adds an option redoes nothing."""
        blob = json.dumps([self.model, self.dtype, *([self.compute_type] if self.compute_type != "auto" else []), _changed(self.options),
                           *[_changed(e) for e in extra]], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _changed(value: Any) -> Any:
    """A dataclass's fields that differ from their defaults, recursively; anything else as it is."""
    if not is_dataclass(value):
        return value
    out = {}
    for f in fields(value):
        current = getattr(value, f.name)
        default = f.default if f.default is not MISSING else f.default_factory() if f.default_factory is not MISSING else MISSING
        if is_dataclass(current):
            if _changed(current):
                out[f.name] = _changed(current)
        elif current != default:
            out[f.name] = current
    return out


def worker_device(device: str, slot: int | None) -> str:
    """Spread local workers over the GPUs: worker ``slot`` gets ``cuda:<slot mod count>`` for 'auto'/'cuda'."""
    from ..api import gpu_visible

    if slot is None or device not in ("auto", "cuda") or not gpu_visible():
        return device
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return device
    return f"cuda:{slot % torch.cuda.device_count()}"


class Transcriber:
    """Holds one loaded model; calling it transcribes one file (a path or its bytes)."""

    def __init__(self, spec: WorkSpec, slot: int | None = None):
        from ..api import choose_backend, load_model

        device = worker_device(spec.device, slot)
        backend = choose_backend(spec.backend, device, spec.dtype)
        if backend == "torch" and spec.threads > 0:
            import torch

            torch.set_num_threads(spec.threads)
        self.model = load_model(spec.model, device=device, dtype=spec.dtype, cache_dir=spec.model_dir, backend=backend,
                                compute_type=spec.compute_type, threads=spec.threads if backend == "onnx" else 0)
        options = spec.options
        language = options.decoding.language
        if not self.model.is_multilingual and language not in (None, "en", "English", "english"):
            # as `tingxie transcribe` does: an English-only model transcribes in English, with a warning
            print(f"tingxie batch: warning: {spec.model} is English-only; using English instead of {language!r}", file=sys.stderr)
            options = replace(options, decoding=replace(options.decoding, language="en"))
        self.options = options
        self.where = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, audio: Any) -> dict[str, Any]:
        result = self.model.transcribe(audio, self.options)
        return {"result": result.to_dict(), "duration": result.duration, "worker": self.where}


def describe_error(error: BaseException) -> tuple[bool, str]:
    """(permanent, one-line reason). A TingxieError (undecodable audio, bad option) will fail the same
    way again, so it is not retried; anything else (out of memory, I/O, a bug) may be transient."""
    if isinstance(error, TingxieError):
        return True, str(error)
    return False, f"{type(error).__name__}: {error}"


def run_one(transcribe: Callable[[Any], dict[str, Any]], audio: Any) -> tuple:
    """The outcome of one file: (OK, payload) or (ERROR, permanent, reason); never raises an Exception."""
    try:
        return (OK, transcribe(audio))
    except Exception as e:  # noqa: BLE001 - reported to the driver, which decides about retries
        permanent, reason = describe_error(e)
        return (ERROR, permanent, reason)
