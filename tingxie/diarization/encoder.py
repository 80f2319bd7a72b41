"""The GE2E speaker encoder (a 3-layer LSTM over 40-band mel frames, 256-d embeddings) on ONNX Runtime.

The trained weights ship in the PyPI package Resemblyzer (``resemblyzer/pretrained.pt``, Apache-2.0); its code is
never imported, and PyTorch is not needed: the first use reads the file (``checkpoint.py``), writes our definition of
the network as an ONNX graph with those weights (``graph.py``) into the model cache
(``<cache>/speaker/ge2e-<key>/encoder.onnx``, ~0.2 s), and later processes only load that graph. A NumPy LSTM was
measured against it: 96 windows took ~5-7 s against ~0.9 s on ONNX Runtime (2 cores), so ONNX Runtime runs it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import TingxieError

WEIGHTS_PACKAGE = "resemblyzer"
WEIGHTS_FILE = "pretrained.pt"
EXPORT_VERSION = 2  # bump when the written graph changes
HIDDEN = 256
LAYERS = 3
N_MELS = 40
RUN_WINDOWS = 32  # windows in one session run at most on one thread (the LSTM's buffers grow with the batch)
INSTALL_HINT = "pip install --no-deps Resemblyzer==0.1.4"


class SpeakerModelUnavailableError(TingxieError):
    """The speaker encoder's weights (the Resemblyzer package) are not installed."""


def check_packages() -> None:
    """The diarize extra's packages (SciPy clusters, onnx writes the encoder's graph), said in one line when missing."""
    missing = [name for name in ("scipy", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise SpeakerModelUnavailableError(f"speaker diarization needs {' and '.join(missing)}: pip install 'tingxie-asr[diarize]'")


def weights_path() -> Path:
    """Where the installed Resemblyzer package keeps its trained weights (found without importing the package)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise SpeakerModelUnavailableError(f"speaker diarization needs the speaker-encoder weights of the Resemblyzer package: {INSTALL_HINT}")
    path = Path(spec.origin).parent / WEIGHTS_FILE
    if not path.is_file():
        raise SpeakerModelUnavailableError(f"the Resemblyzer package has no {WEIGHTS_FILE} at {path}; reinstall it: {INSTALL_HINT}")
    return path


def export_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the exported encoder lives (keyed by the weights file's path, size and time)."""
    from ..weights.cache import resolve_cache_dir

    source = weights_path()
    stat = source.stat()
    key = f"{EXPORT_VERSION}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return resolve_cache_dir(cache_dir) / "speaker" / f"ge2e-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def load_state(path: Path) -> dict[str, np.ndarray]:
    """The network's weights as float32 arrays, read from the package's legacy torch.save file without PyTorch."""
    from ..errors import CheckpointError
    from .checkpoint import load_legacy_torch

    try:
        checkpoint = load_legacy_torch(path)
    except CheckpointError as e:
        raise SpeakerModelUnavailableError(f"{e}; reinstall it: {INSTALL_HINT}") from e
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else {}
    names = [f"lstm.{kind}_l{layer}" for layer in range(LAYERS) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    missing = [n for n in [*names, "linear.weight", "linear.bias"] if n not in state]
    if missing:
        raise SpeakerModelUnavailableError(f"{path} is not the GE2E encoder's weights (missing {', '.join(missing[:3])})")
    return {name: np.asarray(state[name], dtype=np.float32) for name in [*names, "linear.weight", "linear.bias"]}


def export_encoder(target: Path) -> None:
    """Write the encoder's ONNX graph with the packaged weights into ``target/encoder.onnx`` atomically."""
    import onnx

    from ..weights.cache import write_folder_atomically
    from .graph import encoder_graph

    model = encoder_graph(load_state(weights_path()))
    write_folder_atomically(target, lambda work: onnx.save(model, str(work / "encoder.onnx")), "encoder.onnx")


class SpeakerEncoder:
    """The encoder in an ONNX Runtime session: ``embed(mels)`` for a batch of equal-length windows.

    ONNX Runtime runs an LSTM on one thread whatever its thread count (54 windows: 1.0 s on 1 or 2 threads), so a
    batch is cut into one part per core and the parts run side by side (0.7 s on this 2-core machine under load)."""

    def __init__(self, folder: Path, threads: int = 0) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(folder / "encoder.onnx"), options, providers=["CPUExecutionProvider"])
        self.threads = threads if threads > 0 else min(os.cpu_count() or 1, 4)
        self._pool = None

    def embed(self, mels: np.ndarray, threads: int = 0) -> np.ndarray:
        """(batch, frames, 40) float32 mel power frames -> (batch, 256) unit-length embeddings, the batch cut into
        parts for up to ``threads`` threads (0: the encoder's own count; the same embeddings whatever the count)."""
        if len(mels) == 0:
            return np.zeros((0, HIDDEN), dtype=np.float32)
        mels = np.ascontiguousarray(mels, dtype=np.float32)
        parts = min(threads or self.threads, len(mels) // 4)  # a few windows a part at least, or one call
        if parts < 2:  # one thread: RUN_WINDOWS a run, as two parts of a batch would (a 64-window run held ~17 MiB more)
            return np.concatenate([self._run(p) for p in np.array_split(mels, -(-len(mels) // RUN_WINDOWS))])
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="speaker-encoder")
        return np.concatenate(list(self._pool.map(self._run, np.array_split(mels, parts))))

    def _run(self, mels: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"mels": mels})[0]


@lru_cache(maxsize=2)
def load_encoder(cache_dir: str | None = None, threads: int = 0) -> SpeakerEncoder:
    """The encoder, exported into the cache the first time (once per process after that)."""
    check_packages()
    folder = export_folder(cache_dir)
    if (folder / "encoder.onnx").is_file():
        try:
            return SpeakerEncoder(folder, threads)
        except Exception as e:  # noqa: BLE001 - a damaged export is made again, whatever onnxruntime says about it
            print(f"tingxie: the speaker encoder in {folder} did not load ({e}); exporting again", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
    export_encoder(folder)
    return SpeakerEncoder(folder, threads)
