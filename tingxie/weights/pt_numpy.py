"""PyTorch's zip checkpoints (``torch.save``: OpenAI's ``.pt``, ``pytorch_model.bin``) read into NumPy arrays without
PyTorch.

The archive holds ``<name>/data.pkl``, a pickle whose tensors are ``torch._utils._rebuild_tensor_v2`` calls over
storages kept as raw little-endian files ``<name>/data/<key>``. Only those calls, storage types, ``OrderedDict``
and plain containers are allowed: nothing else a pickle names is ever imported or run (as ``weights_only=True``).
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

_STORAGES = {
    "FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64, "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: Any  # a NumPy dtype, or "bfloat16"


@dataclass(frozen=True)
class _Storage:
    data: np.ndarray  # flat; uint16 words for bfloat16
    bfloat16: bool


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    data = storage.data
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
    array = np.array(view)  # a copy: contiguous, writeable, detached from the archive's bytes
    if storage.bfloat16:  # bfloat16 is the upper half of a float32: widening is exact
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGES:
            return _StorageType(_STORAGES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        raw = self.archive.read(f"{self.prefix}/data/{pid[2]}")
        dtype = pid[1].dtype
        if dtype == "bfloat16":
            return _Storage(np.frombuffer(raw, dtype="<u2"), True)
        return _Storage(np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")), False)


def load_torch_zip(path: Path) -> Any:
    """The object ``torch.save`` wrote to ``path`` (zip format), its tensors as NumPy arrays; CheckpointError for
    a damaged file, the legacy (pre-1.6) format or a pickle naming anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise CheckpointError(f"{path} is not a PyTorch zip checkpoint (no single data.pkl)")
            prefix = pickles[0].removesuffix("/data.pkl")
            byteorder = f"{prefix}/byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
                raise CheckpointError(f"{path} was saved big-endian; load it with PyTorch (pip install 'tingxie-asr[torch]')")
            with archive.open(pickles[0]) as f:
                return _Unpickler(f, archive, prefix).load()
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path} is truncated or in PyTorch's legacy format (load it with pip install 'tingxie-asr[torch]'): {e}") from e
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, OSError) as e:
        raise CheckpointError(f"{path} is truncated or not a Whisper checkpoint: {e}") from e
