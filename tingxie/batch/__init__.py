"""Batch transcription of whole archives: resumable jobs on a local process pool or a Ray cluster.

    >>> import tingxie.batch
    >>> summary = tingxie.batch.run("recordings/", "transcripts/", output_format="srt", language="en")
    >>> summary.ok, summary.failed

The same as ``tingxie batch recordings/ --output_dir transcripts/ --output_format srt --language en``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["BatchItem", "BatchSummary", "run", "walk_input"]

_LAZY = {"run": "tingxie.batch.job", "BatchSummary": "tingxie.batch.job", "BatchItem": "tingxie.batch.inputs", "walk_input": "tingxie.batch.inputs"}

if TYPE_CHECKING:
    from .inputs import BatchItem, walk_input
    from .job import BatchSummary, run


def __getattr__(name: str) -> Any:
    # `tingxie --help` imports tingxie.batch.cli; the driver's modules wait until a job runs
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tingxie.batch' has no attribute {name!r}")
