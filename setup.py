"""The compiled parts (everything else is in pyproject.toml): the encoder's bfloat16 attention and product kernels and the
int8 logits kernel for x86-64 Linux, word timing's DTW and median filter and beam search's top-k (plain C, every platform).

All are optional: where a kernel does not build (no C compiler, another platform) tingxie runs ONNX Runtime instead
(float32 attention, the int8 encoder stages, the logits graph), with the same results up to bfloat16 or int8 rounding;
without word timing's part, NumPy fills the same matrix and filters the same values (the same paths, slower); without
the top-k, NumPy picks the same candidates."""

import platform
import sys

from setuptools import Extension, setup

x86_64_linux = sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")
# the instructions are used only where the CPU reports them (tingxie.ort.native checks /proc/cpuinfo)
avx512 = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-pthread"]
amx = ["-mavx512bf16", "-mamx-tile", "-mamx-bf16"]
kernels = {"_attention_bf16": amx, "_linear_bf16": amx, "_logits_int8": ["-mavx512vnni"], "_decoder_step": ["-mavx512vnni"]}
common = ["tingxie/ort/csrc/kernel_common.h", "tingxie/csrc/exp_avx512.h"]  # included by the kernels: a change to one rebuilds them
extensions = [Extension(f"tingxie.ort.{name}", [f"tingxie/ort/csrc/{name[1:]}.c"], depends=common, extra_compile_args=[*avx512, *flags],
                        extra_link_args=["-pthread"], optional=True) for name, flags in kernels.items()] if x86_64_linux else []
# no fast-math and no contracted multiply-adds: the DTW's sums must round as the reference's do; -O3 vectorizes the median filter
extensions.append(Extension("tingxie._timing", ["tingxie/csrc/timing.c"], extra_compile_args=["-O3", "-ffp-contract=off"], optional=True))
extensions.append(Extension("tingxie._select", ["tingxie/csrc/select.c"], depends=["tingxie/csrc/exp_avx512.h"], extra_compile_args=["-O3"], libraries=["m"],
                            optional=True))
setup(ext_modules=extensions)
