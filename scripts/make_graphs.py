"""Write the weight-free ONNX graphs the package ships (tingxie/assets/graphs/<arch>/), through PyTorch.

    python scripts/make_graphs.py              # every architecture in SHIPPED_ARCHITECTURES
    python scripts/make_graphs.py tiny.en base  # only these

Run it after any change to the exported graphs (tingxie/ort/export.py, tingxie/model.py, EXPORT_VERSION):
tests/test_light_install.py fails until the shipped graphs equal a fresh export.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from tingxie.ort.graphs import graphs_root
from tingxie.ort.weightless import SHIPPED_ARCHITECTURES, export_weight_free
from tingxie.weights.registry import OFFICIAL_MODELS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", nargs="*", default=list(SHIPPED_ARCHITECTURES), help="official model names (default: all shipped)")
    args = parser.parse_args()
    for arch in args.arch:
        if arch not in OFFICIAL_MODELS:
            print(f"make_graphs: unknown model {arch!r}", file=sys.stderr)
            return 2
        target = graphs_root() / arch
        started = time.perf_counter()
        shutil.rmtree(target, ignore_errors=True)
        export_weight_free(OFFICIAL_MODELS[arch].dims, target)
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        print(f"{arch}: {size / 1024:.0f} KiB in {target} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
