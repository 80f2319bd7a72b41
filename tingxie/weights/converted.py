"""A converted copy of an official model, kept in the cache so later loads skip the conversion.

The first load of a named model (tiny.en, base, ...) converts its checkpoint (CTranslate2, OpenAI
``.pt``) to the canonical state dict in the dtype the model will run in and writes it as one
safetensors file under ``<cache>/converted/``. Later loads map that file: no format conversion, no
dtype copy. The file's name carries a key made from the source file's path, size and modification
time, so a changed or upgraded source is converted afresh. Failing to write the copy is not an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .cache import resolve_cache_dir
from .checkpoint import Checkpoint, ModelDimensions

FORMAT_VERSION = 1
_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _source_file(path: Path) -> Path:
    return path / "model.bin" if path.is_dir() else path


def converted_file(name: str, path: Path, dtype: torch.dtype, cache_dir: str | os.PathLike | None) -> Path | None:
    """Where the converted copy of model ``name`` (from ``path``) in ``dtype`` lives; None if it can't be keyed."""
    if dtype not in _DTYPE_NAMES:
        return None
    try:
        stat = _source_file(path).stat()
    except OSError:
        return None
    key = f"{FORMAT_VERSION}|{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{name}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return resolve_cache_dir(cache_dir) / "converted" / f"{name}-{_DTYPE_NAMES[dtype]}-{digest}.safetensors"


def read_converted(file: Path, source: Path) -> Checkpoint | None:
    """The checkpoint in a converted copy, or None when the file is absent or unreadable."""
    from safetensors import SafetensorError, safe_open

    if not file.is_file():
        return None
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safetensors file, not a dict)
        dims = ModelDimensions(**json.loads(meta["dims"]))
        heads = json.loads(meta.get("alignment_heads", "null"))
    except (OSError, KeyError, ValueError, TypeError, SafetensorError):
        return None
    return Checkpoint(
        dims=dims, state_dict=state, alignment_heads=None if heads is None else [tuple(h) for h in heads],
        source=source, format=meta.get("format", ""), extra={"converted": str(file)},
    )


def write_converted(file: Path, checkpoint: Checkpoint, dtype: torch.dtype) -> bool:
    """Write the converted copy atomically; False (and nothing left behind) when the cache is not writable."""
    from safetensors.torch import save_file

    state = {k: v.detach().to(dtype).contiguous() for k, v in checkpoint.state_dict.items()}
    heads = None if checkpoint.alignment_heads is None else [list(h) for h in checkpoint.alignment_heads]
    meta = {"dims": json.dumps(vars(checkpoint.dims)), "alignment_heads": json.dumps(heads), "format": checkpoint.format}
    tmp = file.parent / f".{file.name}.{os.getpid()}.part"
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp), metadata=meta)
        os.replace(tmp, file)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True
