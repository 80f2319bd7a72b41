"""Full and read-only disks: ``tingxie batch`` and the model cache say which path and why in one line, and a
batch stopped by a full disk finishes on the next run (its state file says which files were done).

Real file systems, not mocks: each case runs in its own mount namespace (``unshare``) on a small tmpfs,
which disappears with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, audio_path

_PREFIXES = (["unshare", "--mount", "--propagation", "private"], ["unshare", "--user", "--map-root-user", "--mount"])


def in_private_mounts(script: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a bash ``script`` in a mount namespace of its own (its tmpfs mounts never reach the machine)."""
    for prefix in _PREFIXES:
        if shutil.which(prefix[0]) and subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode == 0:
            return subprocess.run([*prefix, "bash", "-euc", script], capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)
    message = "cannot make a private mount namespace (unshare as root, or unprivileged user namespaces) for a small tmpfs"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture()
def inputs(tmp_path: Path) -> Path:
    """Three recordings; without --progress the job takes them in name order: jfk, libri_wizard, real_concat."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("real_concat", "jfk", "libri_wizard"):
        shutil.copy(audio_path(name), folder)
    return folder


def batch(inputs: Path, output_dir: str) -> str:
    return f"{sys.executable} -m tingxie batch {inputs} --output_dir {output_dir} --output_format txt --workers 1 --progress False"


def test_batch_on_a_read_only_disk_names_the_folder(inputs: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    run = in_private_mounts(f"mkdir -p {disk}; mount -t tmpfs -o ro,size=64k tmpfs {disk}; {batch(inputs, f'{disk}/out')}")
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert f"tingxie batch: error: cannot write the output folder {disk}/out: the file system is read-only" in run.stderr


def test_batch_on_a_full_disk_stops_with_the_path_and_a_rerun_finishes(inputs: Path, tmp_path: Path) -> None:
    """12 KiB of tmpfs hold the state file and two transcripts (a page each); the third file finds the disk full."""
    disk = tmp_path / "disk"
    state = f"{disk}/out/.tingxie_batch.jsonl"
    script = (
        f"mkdir -p {disk}; mount -t tmpfs -o size=12k tmpfs {disk}\n"
        f"set +e; {batch(inputs, f'{disk}/out')}; echo \"first=$?\" >&2\n"
        f"cp {state} {tmp_path}/state_after_full.jsonl\n"
        f"mount -o remount,size=1m {disk}\n"  # space freed
        f"{batch(inputs, f'{disk}/out')}; echo \"second=$?\" >&2\n"
        f"ls {disk}/out >&2\n"
    )
    run = in_private_mounts(script)
    first, rest = run.stderr.split("first=", 1)
    first_status, rest = rest.split("\n", 1)
    second, rest = rest.split("second=", 1)
    second_status, listing = rest.split("\n", 1)
    assert first_status == "2" and "Traceback" not in run.stderr, run.stderr
    assert (f"tingxie batch: error: cannot write the outputs of {inputs}/real_concat.flac into {disk}/out: "
            "the disk is full (no space left on device)") in first
    assert "run the same command again" in first
    done = [json.loads(line)["path"] for line in (tmp_path / "state_after_full.jsonl").read_text().splitlines()
            if json.loads(line)["status"] == "done"]
    assert done == [f"{inputs}/jfk.flac", f"{inputs}/libri_wizard.flac"]  # the state says what was finished
    assert second_status == "0", run.stderr
    assert "3 files: 1 transcribed, 2 already done, 0 failed" in second
    assert set(listing.split()) == {"jfk.txt", "libri_wizard.txt", "real_concat.txt"}


@pytest.mark.parametrize("mount,cause", [("ro,size=64k", "the file system is read-only"), ("size=8k", "the disk is full (no space left on device)")])
def test_the_model_cache_names_the_file_and_the_cause(tmp_path: Path, mount: str, cause: str) -> None:
    disk = tmp_path / "cache"
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tingxie.weights.cache import atomic_writer, CacheWriteError\n"
        "dest = Path(sys.argv[1]) / 'models' / 'model.bin'\n"
        "try:\n"
        "    with atomic_writer(dest) as out:\n"
        "        out.write(bytes(64 * 1024))\n"
        "except CacheWriteError as e:\n"
        "    print(e)\n"
        "print(sorted(p.name for p in dest.parent.iterdir()) if dest.parent.is_dir() else 'no folder')\n"
    )
    run = in_private_mounts(f"mkdir -p {disk}; mount -t tmpfs -o {mount} tmpfs {disk}; {sys.executable} -c \"{probe}\" {disk}")
    assert run.returncode == 0, run.stderr
    message, left = run.stdout.splitlines()
    assert message.startswith(f"cannot write {disk}/models/model.bin: {cause}") and "--model_dir" in message
    assert left in ("[]", "no folder")  # nothing half-written is left behind


def test_a_read_only_model_cache_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    """Making the ONNX graphs into a cache that cannot be written: CacheWriteError naming the folder, not a traceback."""
    import errno

    import tingxie.ort.finish as finish
    from tingxie.ort.runtime import load_ort_model
    from tingxie.weights.cache import CacheWriteError

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "onnx"))

    monkeypatch.setattr(finish, "bind_model", read_only)
    with pytest.raises(CacheWriteError, match=r"cannot write the model's ONNX graphs into .*onnx: .*--model_dir"):
        load_ort_model("tiny.en", "int8", cache_dir=tmp_path)
