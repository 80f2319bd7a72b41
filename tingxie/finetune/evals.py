"""Evaluations before and after fine-tuning, through tingxie's evaluation module (``tingxie eval``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .config import FinetuneConfig


def evaluate_all(model, config: FinetuneConfig, report: Path, *, log: Callable[[str], None] = print, heads=None) -> dict:
    """Evaluate ``model`` (a WhisperModel, or our Whisper module with its alignment heads) on every eval manifest.

    Greedy decoding at temperature 0 without fallback (the same every time, and fast), in the
    configured language and task. Writes ``report`` as {manifest: the full report of ``tingxie eval``}
    and returns {manifest: {"wer", "cer", "term_recall"}}.
    """
    import torch

    from ..api import WhisperModel
    from ..evaluate import evaluate, format_summary, read_manifest, read_terms, write_report
    from ..options import build_options
    from ..torch_engine import TorchEngine

    wrapped = model if isinstance(model, WhisperModel) else WhisperModel(TorchEngine(model), name=config.model, alignment_heads=heads)
    options = build_options(temperature=0.0, language=config.language, task=config.task)
    vocabulary = read_terms(config.terms) if config.terms else None
    module = wrapped.module
    was_training = getattr(module, "training", None)  # a PyTorch module; the ONNX Runtime engine has no training mode
    if was_training is not None:
        module.eval()  # no dropout (LoRA's included) while decoding
    reports, summaries = {}, {}
    try:
        with torch.no_grad():
            for manifest in config.eval:
                result = evaluate(wrapped, read_manifest(manifest), options, progress=config.progress, vocabulary=vocabulary,
                                  manifest=manifest, desc=f"evaluating {Path(manifest).name}")
                log(format_summary(result, f"{Path(report).stem} {manifest}: "))
                reports[manifest] = result.to_dict()
                summaries[manifest] = result.summary()
    finally:
        if was_training is not None:
            module.train(was_training)
    write_report(reports, report)
    return summaries
