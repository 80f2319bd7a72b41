"""The CLI as whole processes, an earlier revision against the working tree, alternating, on this machine: what a
session's changes did to a user's run, free of a peer's own drift between runs (the host's speed moves whole
processes by +-10 % here; ratios to faster-whisper are read within one run of speed.py).

    /work/notes/cpu-exclusive python bench/revision_ab.py --base df10814                    # beam 5 (the CLI's default)
    python bench/revision_ab.py --base df10814 --beam_size None --rounds 6                 # greedy
    python bench/revision_ab.py --base 8b126ac --batch_size 8 --input long.wav --rounds 4  # VAD-batched

The revision is checked out in a temporary git worktree and built there (its own compiled kernels, bytecode written
as an install does); each process runs `python -m tingxie transcribe INPUT --output_format srt` from its checkout.
Prints the medians, the ratio, the peak RSS and whether the two SRT files are the same."""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import REPO, compile_tingxie, run_child_rss  # noqa: E402


def build(tree: Path) -> None:
    """A checkout's optional extensions in place and its bytecode (as `pip install` leaves them)."""
    built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=tree, capture_output=True, text=True)
    if built.returncode:
        raise SystemExit(f"building {tree} failed:\n{built.stderr[-2000:]}")
    compileall.compile_dir(str(tree / "tingxie"), quiet=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the earlier revision (a commit, tag or branch)")
    p.add_argument("--rounds", type=int, default=10, help="alternating rounds; medians are reported (default: 10)")
    p.add_argument("--beam_size", default="5", help="the CLI's --beam_size; None is greedy (default: 5)")
    p.add_argument("--batch_size", type=int, default=0, help="the CLI's --batch_size (VAD-batched mode); 0: sequential (default: 0)")
    p.add_argument("--input", type=Path, default=REPO.parent / "shared" / "data" / "en" / "real_concat.flac",
                   help="the audio (default: ../shared/data/en/real_concat.flac)")
    args = p.parse_args()

    compile_tingxie()
    with tempfile.TemporaryDirectory() as work:
        base = Path(work) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=REPO, check=True)
        try:
            build(base)
            trees = {args.base: base, "tree": REPO}
            walls: dict[str, list[float]] = {name: [] for name in trees}
            peaks: dict[str, float] = dict.fromkeys(trees, 0.0)
            for i in range(args.rounds):
                for name in trees if i % 2 == 0 else reversed(list(trees)):
                    out = Path(work) / f"out-{'base' if name == args.base else 'tree'}"
                    cmd = [sys.executable, "-m", "tingxie", "transcribe", str(args.input), "--beam_size", args.beam_size,
                           "--output_format", "srt", "--output_dir", str(out), "--verbose", "False", "--progress", "False",
                           *(["--batch_size", str(args.batch_size)] if args.batch_size else [])]
                    wall, peak, _ = run_child_rss(cmd, cwd=trees[name])
                    walls[name].append(wall)
                    peaks[name] = max(peaks[name], peak)
            for name in trees:
                print(f"{name}: median {statistics.median(walls[name]):.3f} s, min {min(walls[name]):.3f} s, "
                      f"peak RSS {peaks[name]:.0f} MiB ({args.rounds} runs)")
            ratio = statistics.median(walls["tree"]) / statistics.median(walls[args.base])
            srt = args.input.with_suffix(".srt").name
            same = (Path(work) / "out-base" / srt).read_text(encoding="utf-8") == (Path(work) / "out-tree" / srt).read_text(encoding="utf-8")
            print(f"tree / {args.base}: {ratio:.3f}x; SRT {'the same' if same else 'DIFFERENT'} (--beam_size {args.beam_size}"
                  f"{f', --batch_size {args.batch_size}' if args.batch_size else ''})")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False)


if __name__ == "__main__":
    main()
