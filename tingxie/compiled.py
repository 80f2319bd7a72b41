"""The package's plain-C parts (setup.py's optional extensions), loaded with ctypes; None where one was not built."""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Sequence


def compiled_library(module: str, signatures: dict[str, tuple[Sequence, type | None]]) -> ctypes.CDLL | None:
    """The extension ``module`` (e.g. "tingxie._timing") with each function's (argtypes, restype) set, or None where
    it was not built or does not load; callers keep a NumPy path for None."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    try:
        library = ctypes.CDLL(spec.origin)
    except OSError:
        return None
    for name, (argtypes, restype) in signatures.items():
        function = getattr(library, name)
        function.argtypes, function.restype = list(argtypes), restype
    return library
