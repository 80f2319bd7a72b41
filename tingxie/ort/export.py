"""Export the PyTorch model (tingxie.model) to ONNX graphs for ONNX Runtime, once per model.

The graphs are traced from the same modules the PyTorch path runs (their Linear, LayerNorm, MLP and
embedding layers), so there is one model definition:

- ``encoder0.onnx`` ... ``encoder<n_layer>.onnx``: the encoder cut at each self-attention (``EncoderStage``), from
  mel (batch, n_mels, 3000) to each decoder layer's cross-attention keys (batch, head, frames, d_head) and values,
  transposed (batch, head, d_head, frames); the attention between them runs in ``attention.py`` (bfloat16 products
  where the CPU has them) or as ``attention.onnx``, ONNX Runtime's fused float32 kernel.
- ``decoder.onnx``: new tokens, their positions, an additive attention mask over the rows' own
  cache buffer and the new tokens, and each layer's self-attention cache buffers -> the final hidden state
  (after the last LayerNorm) and the new tokens' keys/values (the caller owns the cache and writes them into its buffers). Beams of one
  audio share its cross keys/values and the keys/values of its prompt (batch = audio x group), so a
  beam step reads them once, not per beam.
- ``logits.onnx``: that hidden state against the token embedding (``logits.py``: int8 models run a compiled kernel
  instead where the CPU has one).

int8: MatMul weights are quantized per output channel (ONNX Runtime's dynamic quantization;
activations quantized per call); convolutions stay float32, as in the PyTorch int8 path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import Whisper
from .finish import optimize_graphs, quantize_graphs, write_model_folder
from .layout import DECODER_GRAPH, EXPORT_VERSION, LOGITS_GRAPH, encoder_graph_names
from .logits import write_kernel_weights
from .native_decoder import write_step_weights

OPSET = 17


class FusedAttention(torch.autograd.Function):
    """Unmasked multi-head attention of projected q, k, v (batch, time, state), exported as ONNX Runtime's
    fused MultiHeadAttention kernel (no 1500 x 1500 score matrix per head in memory)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, n_head: int) -> Tensor:
        b, t, state = q.shape

        def heads(x: Tensor) -> Tensor:
            return x.view(b, -1, n_head, state // n_head).transpose(1, 2)

        return F.scaled_dot_product_attention(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(b, t, state)

    @staticmethod
    def symbolic(g, q, k, v, n_head: int):
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=n_head)
        out.setType(q.type())
        return out


class ReshapeTo(torch.autograd.Function):
    """``x.reshape(shape)`` exported as one Reshape node whose shape is a constant (0 keeps that axis, -1 is inferred)
    or a shape tensor computed once per call. Traced ``reshape`` with dynamic sizes adds a Shape/Gather/Unsqueeze/
    Concat chain per reshape: those were ~60 % of a one-token decoder step's ~370 nodes."""

    @staticmethod
    def forward(ctx, x: Tensor, shape: Tensor | tuple[int, ...]) -> Tensor:
        dims = shape.tolist() if isinstance(shape, Tensor) else list(shape)
        return x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(dims)])

    @staticmethod
    def symbolic(g, x, shape):
        if isinstance(shape, tuple):
            shape = g.op("Constant", value_t=torch.tensor(shape, dtype=torch.long))
        return g.op("Reshape", x, shape)


class SplitLast(torch.autograd.Function):
    """``x`` split along its last axis into parts of the given sizes (a tensor computed once per call), exported as
    one Split node: the three slices of each layer's attention weights, and their bounds recomputed from that layer's
    inputs, were ten nodes per layer and step."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: Tensor) -> tuple[Tensor, ...]:
        return tuple(part.clone() for part in torch.split(x, sizes.tolist(), dim=-1))

    @staticmethod
    def symbolic(g, x, sizes):
        return g.op("Split", x, sizes, axis_i=-1, outputs=3)


class EncoderStage(nn.Module):
    """The encoder between two self-attentions, so that the attention itself can run outside ONNX Runtime
    (``attention.py``: bfloat16 products where the CPU has them). Stage 0: mel -> the residual stream after the
    convolutions and the first block's q, k, v. Stage i: the stream and block i-1's attention result -> the stream
    after block i-1 and block i's q, k, v; the last stage ends with each decoder layer's cross-attention keys
    (audio, head, frames, d_head) and values, transposed (audio, head, d_head, frames)."""

    def __init__(self, model: Whisper, index: int):
        super().__init__()
        self.model, self.index = model, index

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        encoder, blocks = self.model.encoder, self.model.encoder.blocks
        if self.index == 0:
            x = F.gelu(encoder.conv1(inputs[0]))
            x = F.gelu(encoder.conv2(x)).permute(0, 2, 1) + encoder.positional_embedding
        else:
            x, attention = inputs
            block = blocks[self.index - 1]
            x = x + block.attn.out(attention)
            x = x + block.mlp(block.mlp_ln(x))
        if self.index < len(blocks):
            attn = blocks[self.index].attn
            h = blocks[self.index].attn_ln(x)
            return x, attn.query(h), attn.key(h), attn.value(h)
        features = encoder.ln_post(x)
        keys, values = [], []
        for block in self.model.decoder.blocks:
            attn = block.cross_attn
            # the window's frames lead both products of a decoder step (keys @ queries', values' @ weights'): the large
            # operand is then read as it is and only the few query rows are packed (packing the 1500 frames' side,
            # as queries @ keys' does, cost ~1.5x the product)
            keys.append(attn.heads(attn.key(features)))
            values.append(attn.heads(attn.value(features)).transpose(-1, -2))
        return (*keys, *values)


class EncoderAttention(nn.Module):
    """The encoder's attention alone, as ONNX Runtime's fused float32 kernel (where the bfloat16 one is not used)."""

    def __init__(self, n_head: int):
        super().__init__()
        self.n_head = n_head

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return FusedAttention.apply(q, k, v, self.n_head)


class DecoderStepGraph(nn.Module):
    """One decoder call. The self-attention keys/values come in three parts: the ``prefix`` of each audio
    (the prompt and start-of-transcript tokens, the same for all its beams, stored once per audio), each
    row's own cache buffer ``past`` (its sampled tokens, then an unused tail the mask hides) and the new
    tokens; one softmax runs over all three. The rows (batch = audio x group)
    of one audio query its prefix and its cross-attention keys/values as one longer sequence: read once a step.

    Word timing uses the same graph: ``heads{i}`` (layer i's alignment heads; empty while decoding, so a step copies
    nothing) select the first audio's pre-softmax cross-attention scores, output as ``cross_scores`` (heads, selected,
    frames): one session, one copy of the weights, for decoding and alignment."""

    def __init__(self, model: Whisper):
        super().__init__()
        self.decoder = model.decoder
        self.n_layer = len(model.decoder.blocks)
        self.n_head, self.n_state = model.dims.n_text_head, model.dims.n_text_state
        # the queries' 1/sqrt(d_head) folded into their weights (a power of two for Whisper's 64: the same products,
        # one Mul node fewer per attention and step)
        scale = (self.n_state // self.n_head) ** -0.5
        self.scaled_queries = nn.ModuleList(_scaled_linear(layer, scale) for block in model.decoder.blocks
                                            for layer in (block.attn.query, block.cross_attn.query))

    def forward(self, tokens: Tensor, positions: Tensor, mask: Tensor, select: Tensor, *cache: Tensor) -> tuple[Tensor, ...]:
        n = self.n_layer
        heads, cache = cache[-n:], cache[:-n]
        prefix_k, prefix_v, past_k, past_v = cache[:n], cache[n : 2 * n], cache[2 * n : 3 * n], cache[3 * n : 4 * n]
        cross_k, cross_vt = cache[4 * n : 5 * n], cache[5 * n :]
        dec = self.decoder
        n_head, n_state = self.n_head, self.n_state
        d_head = n_state // n_head
        # the few dynamic shapes, computed once per call: audios, new tokens per row, prefix length
        # (the prefix may be empty: its axis is the inferred -1, since an explicit 0 means "keep" to ONNX's Reshape)
        audios, rows, new = torch._shape_as_tensor(cross_k[0])[:1], torch._shape_as_tensor(tokens)[:1], torch._shape_as_tensor(tokens)[1:2]
        minus_one, heads_ = torch.tensor([-1]), torch.tensor([n_head])
        shapes = _GroupShapes(
            by_audio=torch.cat([audios, torch.tensor([-1, n_head, d_head])]),  # (b, t, state) -> (audio, group * t, head, d_head)
            rows_state=torch.cat([minus_one, new, torch.tensor([n_state])]),  # (audio, group * t, head, d_head) -> (b, t, state)
            rows_prefix=torch.cat([rows, new, heads_, minus_one]),  # (audio, group * t, head, prefix) -> (b, t, head, prefix)
            audio_prefix=torch.cat([audios, rows * new // audios, heads_, minus_one]),  # the inverse
            # the attention weights' parts: the audio's prefix, the row's buffer, the new tokens
            parts=torch.cat([torch._shape_as_tensor(prefix_k[0])[2:3], torch._shape_as_tensor(past_k[0])[2:3], new]),
        )
        x = dec.token_embedding(tokens) + dec.positional_embedding[positions]
        new_k, new_v, cross_scores = [], [], []
        for layer, block in enumerate(dec.blocks):
            attn, h = block.attn, block.attn_ln(x)
            q = self.scaled_queries[2 * layer](h)
            k, v = _heads(attn.key(h), n_head, d_head), _heads(attn.value(h), n_head, d_head)
            new_k.append(k)
            new_v.append(v)
            x = x + attn.out(self._self(q, prefix_k[layer], prefix_v[layer], (past_k[layer], k), (past_v[layer], v), mask, shapes, n_head, d_head))
            ca = block.cross_attn
            cq = ReshapeTo.apply(self.scaled_queries[2 * layer + 1](block.cross_attn_ln(x)), shapes.by_audio).permute(0, 2, 3, 1)
            scores = cross_k[layer] @ cq  # (audio, head, frames, group * t)
            # the heads first: decoding asks none, so nothing is copied
            cross_scores.append(scores.index_select(1, heads[layer])[0].transpose(-1, -2))
            out = cross_vt[layer] @ torch.softmax(scores, dim=-2)  # (audio, head, d_head, group * t)
            x = x + ca.out(ReshapeTo.apply(out.permute(0, 3, 1, 2), shapes.rows_state))
            x = x + block.mlp(block.mlp_ln(x))
        # the hidden state only where the caller reads logits (a 200-token prompt would otherwise cost 200 x vocab)
        return (dec.ln(x[:, select]), *new_k, *new_v, torch.cat(cross_scores)[:, select])

    @staticmethod
    def _self(q: Tensor, prefix_k: Tensor, prefix_v: Tensor, keys: tuple[Tensor, Tensor], values: tuple[Tensor, Tensor], mask: Tensor,
              shapes: _GroupShapes, n_head: int, d_head: int) -> Tensor:
        """Scaled queries (b, t, state) over the audio's prefix, the row's cache buffer and the new tokens -> (b, t, state).
        ``keys``/``values``: (the row's buffer (b, head, capacity, d_head), the new tokens' (b, head, t, d_head)); the
        buffer is read in place (the mask hides its unused tail), never joined to the new tokens' (a copy per step)."""
        q_audio = ReshapeTo.apply(q, shapes.by_audio).transpose(1, 2)  # (audio, head, group * t, d_head)
        prefix_scores = ReshapeTo.apply((q_audio @ prefix_k.transpose(-1, -2)).transpose(1, 2), shapes.rows_prefix).transpose(1, 2)
        q_rows = _heads(q, n_head, d_head)
        own_scores = torch.cat([q_rows @ keys[0].transpose(-1, -2), q_rows @ keys[1].transpose(-1, -2)], dim=-1) + mask  # (b, head, t, own)
        weights = torch.softmax(torch.cat([prefix_scores, own_scores], dim=-1), dim=-1)
        of_prefix, of_buffer, of_new = SplitLast.apply(weights, shapes.parts)
        own = _merge(of_buffer @ values[0] + of_new @ values[1])
        prefix_weights = ReshapeTo.apply(of_prefix.transpose(1, 2), shapes.audio_prefix).transpose(1, 2)
        return own + ReshapeTo.apply((prefix_weights @ prefix_v).transpose(1, 2), shapes.rows_state)


class LogitsGraph(nn.Module):
    """The decoder's final hidden state (..., state) against the token embedding -> logits (..., vocab)."""

    def __init__(self, model: Whisper):
        super().__init__()
        self.token_embedding = model.decoder.token_embedding

    def forward(self, hidden: Tensor) -> Tensor:
        return hidden @ self.token_embedding.weight.T


@dataclass(frozen=True)
class _GroupShapes:
    """Shape tensors of one decoder call for moving between rows (b = audio x group) and audios."""

    by_audio: Tensor
    rows_state: Tensor
    rows_prefix: Tensor
    audio_prefix: Tensor
    parts: Tensor


def _scaled_linear(linear: nn.Linear, scale: float) -> nn.Linear:
    """A copy of ``linear`` whose outputs are ``scale`` times the original's."""
    scaled = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        scaled.weight.copy_(linear.weight * scale)
        if linear.bias is not None:
            scaled.bias.copy_(linear.bias * scale)
    return scaled


def _heads(x: Tensor, n_head: int, d_head: int) -> Tensor:
    """(b, t, state) -> (b, head, t, d_head)"""
    return ReshapeTo.apply(x, (0, -1, n_head, d_head)).transpose(1, 2)


def _merge(x: Tensor) -> Tensor:
    """(b, head, t, d_head) -> (b, t, state)"""
    return ReshapeTo.apply(x.transpose(1, 2), (0, 0, -1))


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def export_graphs(model: Whisper, out_dir: Path) -> None:
    """Write the encoder's stages (encoder0.onnx ...), attention.onnx, decoder.onnx and logits.onnx (float32) for a
    float32 CPU model."""
    dims = model.dims
    n, n_head, d_head = dims.n_text_layer, dims.n_text_head, dims.n_text_state // dims.n_text_head
    cross = _names("cross_k", n) + _names("cross_vt", n)
    stream = torch.zeros(1, dims.n_audio_ctx, dims.n_audio_state)
    with torch.no_grad():
        for index, name in enumerate(encoder_graph_names(dims.n_audio_layer)):
            inputs, args = (["mel"], (torch.zeros(1, dims.n_mels, 2 * dims.n_audio_ctx),)) if index == 0 else (["x", "attention"], (stream, stream))
            outputs = cross if index == dims.n_audio_layer else ["x_next", "q", "k", "v"]
            # after the convolutions every stage works frame by frame: a named frames axis lets a stream encode only
            # its buffer's frames (StagedEncoder.run(..., frames))
            axes = {axis: {0: "audio"} if axis == "mel" else {0: "audio", 1: "frames"} for axis in inputs + outputs}
            if index == dims.n_audio_layer:
                axes |= {name: {0: "audio", 3 if name.startswith("cross_vt") else 2: "frames"} for name in cross}
            torch.onnx.export(EncoderStage(model, index), args, str(out_dir / name), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        torch.onnx.export(EncoderAttention(dims.n_audio_head), (stream, stream, stream), str(out_dir / "attention.onnx"),
                          input_names=["q", "k", "v"], output_names=["out"], dynamic_axes={axis: {0: "audio", 1: "frames"} for axis in ("q", "k", "v", "out")},
                          opset_version=OPSET, dynamo=False, custom_opsets={"com.microsoft": 1})
        # traced with 2 beams of 1 audio, 3 new tokens after a prefix of 5 and 4 cached: every varying size is named
        prefix = [torch.zeros(1, n_head, 5, d_head) for _ in range(2 * n)]
        past = [torch.zeros(2, n_head, 4, d_head) for _ in range(2 * n)]
        cross_kv = [torch.zeros(1, n_head, dims.n_audio_ctx, d_head) for _ in range(n)] + [torch.zeros(1, n_head, d_head, dims.n_audio_ctx) for _ in range(n)]
        inputs = ["tokens", "positions", "mask", "select"] + _names("prefix_k", n) + _names("prefix_v", n) + _names("past_k", n) + _names("past_v", n) + cross
        inputs += _names("heads", n)
        outputs = ["hidden"] + _names("new_k", n) + _names("new_v", n) + ["cross_scores"]
        axes = {"tokens": {0: "batch", 1: "new"}, "positions": {0: "new"}, "mask": {0: "new", 1: "total"}, "select": {0: "selected"},
                "hidden": {0: "batch", 1: "selected"}, "cross_scores": {0: "heads", 1: "selected", 2: "frames"}}
        axes |= {name: {0: "audio", 2: "prefix"} for name in inputs[4 : 4 + 2 * n]}
        axes |= {name: {0: "batch", 2: "past"} for name in inputs[4 + 2 * n : 4 + 4 * n]}
        axes |= {name: {0: "audio", 3 if name.startswith("cross_vt") else 2: "frames"} for name in cross}
        axes |= {name: {0: "heads"} for name in _names("heads", n)}
        axes |= {name: {0: "batch", 2: "new"} for name in outputs[1:-1]}
        heads = [torch.tensor([0, 1]) for _ in range(n)]  # traced with two heads a layer; the count is a named axis
        args = (torch.zeros(2, 3, dtype=torch.long), torch.arange(9, 12), torch.zeros(3, 7), torch.tensor([0, 2]), *prefix, *past, *cross_kv, *heads)
        torch.onnx.export(DecoderStepGraph(model), args, str(out_dir / DECODER_GRAPH), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        torch.onnx.export(LogitsGraph(model), (torch.zeros(2, 3, dims.n_text_state),), str(out_dir / LOGITS_GRAPH), input_names=["hidden"],
                          output_names=["logits"], dynamic_axes={"hidden": {0: "batch", 1: "selected"}, "logits": {0: "batch", 1: "selected"}},
                          opset_version=OPSET, dynamo=False)


def export_model(name_or_path: str | Path, target: Path, compute_type: str, *, cache_dir: str | os.PathLike | None = None,
                 download: bool = True) -> None:
    """Load the checkpoint as a float32 PyTorch model and write its graphs + meta.json to ``target``."""
    from ..model import build_model
    from ..weights import load_checkpoint

    checkpoint = load_checkpoint(name_or_path, cache_dir=cache_dir, download=download, convert_to=torch.float32)
    module = build_model(checkpoint, device="cpu", dtype=torch.float32)
    export_module(module, target, compute_type, name=str(name_or_path), source=checkpoint.source, alignment_heads=checkpoint.alignment_heads)


def export_module(module: Whisper, target: Path, compute_type: str, *, name: str = "", source: Path | None = None,
                  alignment_heads: list | None = None) -> None:
    """Export a float32 CPU model into ``target`` atomically (built in a temporary folder beside it, then renamed)."""
    import warnings

    graphs = [*encoder_graph_names(module.dims.n_audio_layer), DECODER_GRAPH, LOGITS_GRAPH]

    def prepare(work: Path) -> None:
        with warnings.catch_warnings():  # tracer warnings about shape checks that are constant for a given model
            warnings.simplefilter("ignore")
            export_graphs(module, work)
        if compute_type == "int8":
            quantize_graphs(work, graphs)
            write_kernel_weights(work, module.decoder.token_embedding.weight.detach().float().numpy())
            state = {name: value.detach().float().numpy() for name, value in module.state_dict().items() if name.startswith("decoder.")}
            write_step_weights(work, state, module.dims.n_text_layer)
        optimize_graphs(work, graphs)

    meta = {"version": EXPORT_VERSION, "dims": vars(module.dims), "alignment_heads": alignment_heads,
            "compute_type": compute_type, "name": name, "source": str(source) if source else None}
    write_model_folder(target, prepare, meta)
