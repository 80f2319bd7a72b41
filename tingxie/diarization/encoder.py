"""The GE2E speaker encoder (a 3-layer LSTM over 40-band mel frames, 256-d embeddings) on ONNX Runtime.

The trained weights ship in the PyPI package Resemblyzer (``resemblyzer/pretrained.pt``, Apache-2.0); its code is
never imported. The first use loads the file with torch (weights only), builds our own definition of the network and
exports it into the model cache (``<cache>/speaker/ge2e-<key>/encoder.onnx``); later processes only load that graph.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import TingxieError

WEIGHTS_PACKAGE = "resemblyzer"
WEIGHTS_FILE = "pretrained.pt"
EXPORT_VERSION = 1  # bump when the exported graph changes
HIDDEN = 256
LAYERS = 3
N_MELS = 40
INSTALL_HINT = "pip install --no-deps Resemblyzer==0.1.4"


class SpeakerModelUnavailableError(TingxieError):
    """The speaker encoder's weights (the Resemblyzer package) are not installed."""


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
    """The network's weights as float32 arrays (the file's training state, loaded as plain tensors)."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("model_state", checkpoint)
    names = [f"lstm.{kind}_l{layer}" for layer in range(LAYERS) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    missing = [n for n in [*names, "linear.weight", "linear.bias"] if n not in state]
    if missing:
        raise SpeakerModelUnavailableError(f"{path} is not the GE2E encoder's weights (missing {', '.join(missing[:3])})")
    return {name: state[name].float().numpy() for name in [*names, "linear.weight", "linear.bias"]}


def export_encoder(target: Path) -> None:
    """Build the encoder in torch from the packaged weights and export it to ``target/encoder.onnx`` atomically."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        """mel frames (batch, frames, 40) -> L2-normalised embeddings (batch, 256): the last layer's final state,
        through a linear layer and a ReLU."""

        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
            self.linear = nn.Linear(HIDDEN, HIDDEN)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    model = Encoder()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in load_state(weights_path()).items()})
    model.eval()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with torch.no_grad():
            torch.onnx.export(model, (torch.zeros(2, 160, N_MELS),), str(work / "encoder.onnx"), input_names=["mels"], output_names=["embeddings"],
                              dynamic_axes={"mels": {0: "batch", 1: "frames"}, "embeddings": {0: "batch"}}, opset_version=17, dynamo=False)
        try:
            os.replace(work, target)
        except OSError:  # another process exported it first
            if not (target / "encoder.onnx").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


class SpeakerEncoder:
    """The exported encoder in an ONNX Runtime session: ``embed(mels)`` for a batch of equal-length windows."""

    def __init__(self, folder: Path, threads: int = 0) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(folder / "encoder.onnx"), options, providers=["CPUExecutionProvider"])

    def embed(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, 40) float32 mel power frames -> (batch, 256) unit-length embeddings."""
        if len(mels) == 0:
            return np.zeros((0, HIDDEN), dtype=np.float32)
        return self._session.run(None, {"mels": np.ascontiguousarray(mels, dtype=np.float32)})[0]


@lru_cache(maxsize=2)
def load_encoder(cache_dir: str | None = None, threads: int = 0) -> SpeakerEncoder:
    """The encoder, exported into the cache the first time (once per process after that)."""
    folder = export_folder(cache_dir)
    if (folder / "encoder.onnx").is_file():
        try:
            return SpeakerEncoder(folder, threads)
        except Exception as e:  # noqa: BLE001 - a damaged export is made again, whatever onnxruntime says about it
            print(f"tingxie: the speaker encoder in {folder} did not load ({e}); exporting again", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
    export_encoder(folder)
    return SpeakerEncoder(folder, threads)
