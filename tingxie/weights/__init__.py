"""Checkpoints by name or path, in any supported format, as one canonical :class:`Checkpoint`.

A path may be an OpenAI ``.pt`` file, a Hugging Face folder or weight file (safetensors or
``pytorch_model.bin``, sharded or not) or a CTranslate2 folder (``model.bin`` + ``config.json``).
A name (tiny.en, base, ... turbo) is looked for, in order: in an installed package that ships it
(tiny.en; base and small with the ``tingxie[base]`` / ``tingxie[small]`` extras), in the cache
folder (``$TINGXIE_CACHE``, else ``$XDG_CACHE_HOME/tingxie`` or ``~/.cache/tingxie``), and finally
downloaded from OpenAI and verified by SHA-256. ``$TINGXIE_DOWNLOAD_ROOT`` (or ``download_root=``)
replaces the download server, for tests and mirrors.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # resolving a model by name needs no torch (the ONNX Runtime path)
    import torch

from ..errors import CheckpointError, DownloadError, ModelNotFoundError
from .cache import resolve_cache_dir, sha256_file
from .checkpoint import Checkpoint, ModelDimensions
from .registry import EMBEDDED_MODELS, OFFICIAL_MODELS, heads_for_dims, model_names

__all__ = ["Checkpoint", "ModelDimensions", "detect_format", "list_models", "load_checkpoint", "load_path", "model_names", "resolve_model"]

FORMATS = "an OpenAI .pt file, a Hugging Face folder or .safetensors/pytorch_model.bin file, or a CTranslate2 folder (model.bin + config.json)"

_HF_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin.index.json")


def _is_ctranslate2(path: Path) -> bool:
    """Whether a file starts like a CTranslate2 model.bin (a version, then a '...Spec' name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if len(head) < 6:
        return False
    version, length = struct.unpack_from("<IH", head)
    return 1 <= version <= 6 and 0 < length <= len(head) - 6 and head[6 : 6 + length - 1].endswith(b"Spec")


def detect_format(path: Path) -> str:
    """'openai', 'huggingface' or 'ctranslate2' for an existing file or folder; CheckpointError otherwise."""
    from .huggingface import WEIGHT_FILES

    path = Path(path)
    if path.is_dir():
        if (path / "model.bin").is_file() and _is_ctranslate2(path / "model.bin"):
            return "ctranslate2"
        if any((path / name).is_file() for name in WEIGHT_FILES):
            return "huggingface"
        raise CheckpointError(f"{path} holds no checkpoint; supported: {FORMATS}")
    name = path.name
    if name.endswith((".pt", ".pth")):
        return "openai"
    if name.endswith(_HF_SUFFIXES):
        return "huggingface"
    if name.endswith(".bin"):
        return "ctranslate2" if _is_ctranslate2(path) else "huggingface"
    raise CheckpointError(f"{path} is of no known checkpoint format; supported: {FORMATS}")


def load_path(path: Path, *, hint: str | None = None) -> Checkpoint:
    """Load a checkpoint file or folder, filling in the registry's alignment heads where it has none.

    ``hint`` (a model name) picks the heads among official models of equal size; by default the
    file or folder name is used, so ``large-v2.pt`` gets large-v2's heads.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "ctranslate2":
        from .ctranslate2 import load_ctranslate2

        checkpoint = load_ctranslate2(path)
    elif fmt == "openai":
        from .openai import load_openai_pt

        checkpoint = load_openai_pt(path)
    else:
        from .huggingface import load_huggingface

        checkpoint = load_huggingface(path)
    if checkpoint.alignment_heads is None:
        stem = path.name.removesuffix(".pt") if path.is_file() else path.name
        checkpoint.alignment_heads = heads_for_dims(checkpoint.dims, hint or stem)
    return checkpoint


def _local_path(name_or_path: str | Path) -> Path | None:
    """The path meant, or None for a model name. An official name beats a same-named folder in the
    working directory (write ``./base`` for that); a path-like string that does not exist is an error."""
    if isinstance(name_or_path, Path):
        path = name_or_path.expanduser()
    else:
        text = str(name_or_path)
        if text in OFFICIAL_MODELS:
            return None
        path = Path(text).expanduser()
        if not path.exists() and os.sep not in text and not text.endswith((".pt", ".pth", ".bin", ".safetensors", ".json")):
            return None
    if not path.exists():
        raise ModelNotFoundError(f"no checkpoint at {path}: no such file or folder")
    return path


def resolve_model(
    name_or_path: str | Path,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
    download_root: str | None = None,
) -> Path:
    """The file or folder holding a model: the path itself, an installed package's model, the cached
    file or a fresh download. Raises ModelNotFoundError (with how to get the model) or DownloadError."""
    from .embedded import embedded_model_dir

    path = _local_path(name_or_path)
    if path is not None:
        return path
    name = str(name_or_path)
    model = OFFICIAL_MODELS.get(name)
    if model is None:
        raise ModelNotFoundError(f"unknown model {name!r}: use one of {', '.join(model_names())}, or the path of {FORMATS}")
    cache = resolve_cache_dir(cache_dir)
    embedded = EMBEDDED_MODELS.get(name)
    why_not_embedded = None
    if embedded is not None:
        try:
            return embedded_model_dir(embedded, cache)
        except ModelNotFoundError as e:
            why_not_embedded = str(e)
    cached = cache / model.filename
    if download:
        from .download import download as fetch  # http.client and urllib: ~30 ms, only when a download may happen

        try:
            return fetch(model.url(download_root), model.sha256, cached, progress=progress)
        except DownloadError as e:
            offline = f"; offline: {why_not_embedded}" if why_not_embedded else ""
            raise DownloadError(f"{e}{offline}") from e
    if cached.is_file():
        if sha256_file(cached) == model.sha256:
            return cached
        problem = f"the cached {cached} fails its SHA-256 check"
    else:
        problem = f"it is not in the cache ({cache})"
    if embedded is not None:
        raise ModelNotFoundError(f"{why_not_embedded}, or allow download ({problem})")
    raise ModelNotFoundError(f"model {name!r} is not available offline: {problem}; allow download to fetch {model.filename}")


def load_checkpoint(
    name_or_path: str | Path,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
    download_root: str | None = None,
    convert_to: torch.dtype | None = None,
) -> Checkpoint:
    """Load a model by official name or by path (see the module docstring for the search order).

    With ``convert_to``, a model loaded by official name is kept converted to that dtype in the cache
    (``converted/``) and later loads map that copy instead of converting again; paths load as they are.
    """
    path = resolve_model(name_or_path, cache_dir=cache_dir, download=download, progress=progress, download_root=download_root)
    name = str(name_or_path)
    if convert_to is None or name not in OFFICIAL_MODELS:
        return load_path(path, hint=name if name in OFFICIAL_MODELS else None)
    from .converted import converted_file, read_converted, write_converted

    file = converted_file(name, path, convert_to, cache_dir)
    checkpoint = read_converted(file, path) if file is not None else None
    if checkpoint is None:
        checkpoint = load_path(path, hint=name)
        if file is not None:
            write_converted(file, checkpoint, convert_to)
    return checkpoint


def list_models(cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every official model with where it would come from: 'embedded', 'cached' or 'downloadable'.

    Each row: name, source, path (str or None), size (bytes or None), and a note where the
    installed packages of an embedded model are incomplete. Cheap: nothing is hashed or joined.
    """
    from .embedded import assembled_dir, inspect_embedded

    cache = resolve_cache_dir(cache_dir)
    rows = []
    for name, model in OFFICIAL_MODELS.items():
        row: dict = {"name": name, "source": "downloadable", "path": None, "size": None}
        embedded = EMBEDDED_MODELS.get(name)
        if embedded is not None:
            files = inspect_embedded(embedded)
            if files.usable:
                joined = assembled_dir(files, cache)
                where = files.direct_dir or (joined if (joined / "model.bin").is_file() else files.parts[0].parent)
                rows.append({**row, "source": "embedded", "path": str(where), "size": files.size})
                continue
            if not files.missing:
                row["note"] = files.problem
        cached = cache / model.filename
        if cached.is_file():
            row.update(source="cached", path=str(cached), size=cached.stat().st_size)
        rows.append(row)
    return rows
