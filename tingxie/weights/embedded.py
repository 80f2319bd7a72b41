"""Models shipped inside PyPI packages: find them, check they are whole, and assemble split ones.

A split model's ``model.bin.part{N}`` files (one per package) are joined once into the cache, under
a folder named after the package versions, and reused from there.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shutil
import struct
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import CheckpointError, ModelNotFoundError
from .cache import atomic_writer
from .registry import EmbeddedModel

_PART = re.compile(r"model\.bin\.part(\d+)")


@dataclass(frozen=True)
class EmbeddedFiles:
    """What the installed packages of one embedded model hold."""

    model: EmbeddedModel
    missing: tuple[str, ...]  # distributions not installed
    parts: tuple[Path, ...]  # model.bin, or its parts in join order
    extras: tuple[Path, ...]  # config.json, tokenizer.json, ... to place beside the joined model.bin
    problem: str | None = None  # why the files cannot make a model, if they cannot

    @property
    def versions(self) -> tuple[str, ...]:
        """The installed distributions' versions (read only where a joined copy is named: importlib.metadata
        costs ~45 ms to import, a fifth of a short command's start)."""
        return tuple(_version(d) for d in self.model.distributions)

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.parts)

    @property
    def usable(self) -> bool:
        return not self.missing and self.problem is None

    @property
    def direct_dir(self) -> Path | None:
        """The package's own model folder when no joining is needed."""
        if len(self.parts) == 1 and self.parts[0].name == "model.bin":
            return self.parts[0].parent
        return None


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _version(distribution: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "0"


def inspect_embedded(model: EmbeddedModel) -> EmbeddedFiles:
    """Locate the installed files of ``model`` (cheap: reads only the CTranslate2 headers)."""
    dirs = {p: _package_dir(p) for p in model.packages}
    missing = tuple(d for p, d in zip(model.packages, model.distributions, strict=True) if dirs[p] is None)
    if missing:
        return EmbeddedFiles(model, missing, (), ())
    if model.locator:
        # the package says where its model folder is
        module = importlib.import_module(model.packages[0])
        folder = Path(getattr(module, model.locator)())
        parts: list[Path] = [folder / "model.bin"]
        extras: list[Path] = []
    else:
        numbered: dict[int, Path] = {}
        extras = []
        for package in model.packages:
            data = dirs[package] / "data"
            for f in sorted(data.iterdir()) if data.is_dir() else []:
                m = _PART.fullmatch(f.name)
                if m:
                    numbered[int(m.group(1))] = f
                elif f.is_file():
                    extras.append(f)
        parts = [numbered[n] for n in sorted(numbered)]
        if sorted(numbered) != list(range(1, len(numbered) + 1)):
            problem = f"the parts found are numbered {sorted(numbered)}, not 1..{len(numbered)}"
            return EmbeddedFiles(model, (), tuple(parts), tuple(extras), problem)
    problem = ctranslate2_problem(parts)
    return EmbeddedFiles(model, (), tuple(parts), tuple(extras), problem)


class _Concat:
    """Reads over files laid end to end, as if they were one file; skips without reading."""

    def __init__(self, files: list[BinaryIO], sizes: list[int]):
        self.files, self.sizes = files, sizes
        self.size = sum(sizes)
        self.pos = 0

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise EOFError(f"needs {self.pos + n} bytes, has {self.size}")
        self.pos += n

    def read(self, n: int) -> bytes:
        begin = self.pos
        self.skip(n)
        out, start = bytearray(), 0
        for f, size in zip(self.files, self.sizes, strict=True):
            # the slice [begin, begin + n) may straddle the boundary between two files
            lo, hi = max(begin, start), min(begin + n, start + size)
            if lo < hi:
                f.seek(lo - start)
                out += f.read(hi - lo)
            start += size
        return bytes(out)

    def unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def skip_string(self) -> None:
        self.skip(self.unpack("<H"))


def ctranslate2_problem(parts: list[Path]) -> str | None:
    """Why the concatenation of ``parts`` is not one whole CTranslate2 model.bin, or None if it is.

    Walks the variable headers (name, shape, type, byte count) and checks the data ends exactly
    where the files do: a missing part shows up as a variable running past the end.
    """
    if not parts or not all(p.is_file() for p in parts):
        return "the model.bin file is missing"
    with ExitStack() as stack:
        files = [stack.enter_context(open(p, "rb")) for p in parts]
        return _walk(_Concat(files, [p.stat().st_size for p in parts]))


def _walk(reader: _Concat) -> str | None:
    try:
        version = reader.unpack("<I")
        if not 1 <= version <= 6:
            return f"it is not a CTranslate2 model.bin (binary version {version})"
        reader.skip_string()  # spec name
        if version >= 2:
            reader.unpack("<I")  # spec revision
        for _ in range(reader.unpack("<I")):
            reader.skip_string()
            reader.skip(4 * reader.unpack("<B"))  # shape
            reader.unpack("<B")  # data type
            reader.skip(reader.unpack("<I"))
        for _ in range(reader.unpack("<I") if version >= 3 else 0):
            reader.skip_string()
            reader.skip_string()
    except EOFError as e:
        return f"the model.bin is incomplete ({e}); a part is missing"
    if reader.pos != reader.size:
        return f"the model.bin has {reader.size - reader.pos} bytes after its last variable"
    return None


def embedded_model_dir(model: EmbeddedModel, cache_dir: Path) -> Path:
    """A CTranslate2 model folder for ``model``: the package's own, or the joined one in the cache.

    Raises ModelNotFoundError when the packages are absent or do not make a whole model.
    """
    files = inspect_embedded(model)
    if files.missing:
        raise ModelNotFoundError(f"model {model.name!r} is not installed: {model.install_hint}")
    if files.problem:
        names = ", ".join(files.model.distributions)
        raise ModelNotFoundError(f"the installed packages {names} do not hold the whole {model.name!r} model: {files.problem}")
    return files.direct_dir or _assemble(files, cache_dir)


def assembled_dir(files: EmbeddedFiles, cache_dir: Path) -> Path:
    """Where the joined model of ``files`` lives in the cache (named by the package versions)."""
    return cache_dir / "embedded" / f"{files.model.name}-{'-'.join(files.versions)}"


def _assemble(files: EmbeddedFiles, cache_dir: Path) -> Path:
    target = assembled_dir(files, cache_dir)
    model_bin = target / "model.bin"
    # model.bin is written last and atomically, so its full size means the folder is complete
    if model_bin.is_file() and model_bin.stat().st_size == files.size:
        return target
    try:
        for extra in files.extras:
            with atomic_writer(target / extra.name) as out, open(extra, "rb") as src:
                shutil.copyfileobj(src, out)
        with atomic_writer(model_bin) as out:
            for part in files.parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
    except OSError as e:
        raise CheckpointError(
            f"cannot assemble the {files.model.name!r} model in {target}: {e} (set TINGXIE_CACHE to a writable folder)"
        ) from e
    _remove_stale(files, target)
    return target


def _remove_stale(files: EmbeddedFiles, current: Path) -> None:
    """Drop folders joined from other versions of the same packages (best effort)."""
    prefix = f"{files.model.name}-"
    for other in current.parent.glob(f"{prefix}*"):
        versions = other.name[len(prefix):].split("-")
        if other != current and len(versions) == len(files.versions) and all(v[:1].isdigit() for v in versions):
            shutil.rmtree(other, ignore_errors=True)
