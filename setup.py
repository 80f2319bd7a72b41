"""The one compiled part: the encoder's bfloat16 attention kernel for x86-64 Linux (everything else is in pyproject.toml).

It is optional: where it does not build (no C compiler, another platform) tingxie runs ONNX Runtime's float32
attention instead, with the same results up to bfloat16 rounding."""

import platform
import sys

from setuptools import Extension, setup

x86_64_linux = sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")
# the instructions are used only where the CPU reports them (tingxie.ort.attention checks /proc/cpuinfo)
flags = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-pthread"]
extensions = [Extension("tingxie.ort._attention_bf16", ["tingxie/ort/csrc/attention_bf16.c"], extra_compile_args=flags,
                        extra_link_args=["-pthread"], optional=True)] if x86_64_linux else []
setup(ext_modules=extensions)
