"""The published artefact: a wheel built with ``python -m build`` installs into a fresh virtual environment with the
default dependencies only (no PyTorch, no CUDA libraries) and runs ``tingxie demo`` correctly. Runs in CI with the rest
of the suite (about a minute and a half; ``-m "not wheel"`` leaves it out locally)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.wheel


def _source_files() -> list[str]:
    """The files a checkout holds (tracked, and new ones not ignored): what the wheel is built from."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.splitlines() if (REPO / name).is_file()]


def test_wheel_installs_without_torch_in_a_fresh_venv_and_runs_the_demo(tmp_path):
    source = tmp_path / "source"
    for name in _source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    # built here, without build isolation: the build requirements (setuptools) are this environment's
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, text=True, timeout=600)
    wheels = list((tmp_path / "dist").glob("tingxie_asr-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", str(REPO / "constraints.txt"),
                              str(wheels[0])], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"], capture_output=True,
                               text=True, check=True).stdout.lower()
    assert "tingxie-asr==" in installed
    assert not [line for line in installed.splitlines() if line.startswith(("torch", "nvidia-", "triton"))], installed

    env = {**os.environ, "TINGXIE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": ""}
    demo = subprocess.run([str(venv / "bin" / "tingxie"), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "word for word what the reader said" in demo.stdout, demo.stdout
    assert "The narrative would be tedious to him and painful to myself." in demo.stdout
    assert "real-time factor" in demo.stdout
    assert "preparing tiny.en for ONNX Runtime" in demo.stderr  # made from the shipped graphs, not exported through PyTorch
