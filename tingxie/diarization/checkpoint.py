"""Reading Resemblyzer's ``pretrained.pt`` without PyTorch: it was written by ``torch.save`` in the legacy (pre-1.6)
format, a run of pickles followed by each tensor storage's raw bytes. Only tensors, dicts, lists and numbers are
accepted from the pickle; anything else is refused."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "LongStorage": np.int64,
           "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _Storage:
    def __init__(self, kind: str) -> None:
        self.dtype = np.dtype(_DTYPES[kind])
        self.data: np.ndarray | None = None


class _Tensor:
    """A tensor whose storage bytes come after the pickle: made an array once they are read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        data = self.storage.data
        item = data.itemsize
        return np.lib.stride_tricks.as_strided(data[self.offset :], self.size, tuple(s * item for s in self.stride)).copy()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _Tensor
        if module == "torch" and name in _DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and pid[1] in _DTYPES):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        key = str(pid[2])
        if key not in self.storages:
            self.storages[key] = _Storage(pid[1])
        return self.storages[key]


def load_legacy_torch(path: Path) -> Any:
    """The object a legacy-format ``torch.save`` wrote to ``path``, its tensors as NumPy arrays."""
    try:
        with open(path, "rb") as f:
            if pickle.load(f) != LEGACY_MAGIC:
                raise CheckpointError(f"{path} is not a legacy PyTorch checkpoint")
            pickle.load(f)  # protocol version
            pickle.load(f)  # system info
            storages: dict[str, _Storage] = {}
            result = _Unpickler(f, storages).load()
            for key in pickle.load(f):
                storage = storages[str(key)]
                count = int.from_bytes(f.read(8), "little")
                raw = f.read(count * storage.dtype.itemsize)
                if len(raw) != count * storage.dtype.itemsize:
                    raise CheckpointError(f"{path} is truncated")
                storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, OSError) as e:
        raise CheckpointError(f"{path} is truncated or not a PyTorch checkpoint: {e}") from e
    return _materialize(result)


def _materialize(node: Any) -> Any:
    if isinstance(node, _Tensor):
        return node.array()
    if isinstance(node, dict):
        return type(node)((k, _materialize(v)) for k, v in node.items())
    if isinstance(node, (list, tuple)):
        return type(node)(_materialize(v) for v in node)
    return node
