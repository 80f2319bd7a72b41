"""The teacher-forced training pass and its loss.

The model's own decoder writes keys and values into one preallocated cache tensor shared by all
layers, which autograd cannot differentiate through (each layer's write changes the others'
views). Training sees whole sequences at once, so this pass runs the same blocks with plain causal
attention and no cache; it equals ``Whisper.logits`` (checked by the tests).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model import MultiHeadAttention, Whisper
from .data import IGNORE


def _attend(attn: MultiHeadAttention, x: Tensor, source: Tensor, causal: bool) -> Tensor:
    q, k, v = attn.heads(attn.query(x)), attn.heads(attn.key(source)), attn.heads(attn.value(source))
    return attn.out(attn.merge(F.scaled_dot_product_attention(q, k, v, is_causal=causal)))


def decoder_logits(model: Whisper, tokens: Tensor, audio_features: Tensor) -> Tensor:
    """Logits (batch, tokens, vocab) of every position of ``tokens`` given the audio features."""
    decoder = model.decoder
    x = decoder.token_embedding(tokens) + decoder.positional_embedding[: tokens.shape[-1]]
    x = x.to(audio_features.dtype)
    for block in decoder.blocks:
        h = block.attn_ln(x)
        x = x + _attend(block.attn, h, h, causal=True)
        x = x + _attend(block.cross_attn, block.cross_attn_ln(x), audio_features, causal=False)
        x = x + block.mlp(block.mlp_ln(x))
    x = decoder.ln(x)
    return (x @ decoder.token_embedding.weight.to(x.dtype).T).float()


def batch_loss(model: Whisper, batch: dict[str, Tensor], *, freeze_encoder: bool) -> tuple[Tensor, int]:
    """Mean cross-entropy over the labelled tokens of the batch, and how many there were.

    A batch holds either log-mels or, for a frozen encoder, the encoder's cached ``features``.
    """
    device = model.device
    if "features" in batch:
        features = batch["features"].to(device)
    elif freeze_encoder:
        with torch.no_grad():
            features = model.encoder(batch["mel"].to(device))
    else:
        features = model.encoder(batch["mel"].to(device))
    logits = decoder_logits(model, batch["tokens"].to(device), features)
    labels = batch["labels"].to(device)
    loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE)
    return loss, int((labels != IGNORE).sum())


def encode_all(model: Whisper, mels: Iterable[Tensor], batch_size: int) -> list[Tensor]:
    """The encoder's output (on the CPU) for each log-mel window, computed without gradients ``batch_size`` at a time."""
    features: list[Tensor] = []
    pending: list[Tensor] = []

    def flush() -> None:
        with torch.no_grad():
            out = model.encoder(torch.stack(pending).to(model.device))
        features.extend(t.float().cpu() for t in out)
        pending.clear()

    for mel in mels:
        pending.append(mel)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return features
