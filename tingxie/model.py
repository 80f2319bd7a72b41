"""The Whisper encoder-decoder Transformer in plain PyTorch, one definition for every size.

Parameter names follow OpenAI's checkpoints so that every loader produces the same state dict.
The decoder's key/value cache is explicit data (:class:`KVCache`): preallocated once per decode,
written in place and passed in and out, never grown by concatenation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weights.checkpoint import ModelDimensions


class Linear(nn.Linear):
    def reset_parameters(self) -> None:
        # on the meta device (build_model) the checkpoint replaces every value; meta init would import torch._dynamo (1.5 s)
        if not self.weight.is_meta:
            super().reset_parameters()


class Conv1d(nn.Conv1d):
    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class LayerNorm(nn.LayerNorm):
    def reset_parameters(self) -> None:
        if self.weight is None or not self.weight.is_meta:
            super().reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        # statistics in float32 even for half-precision weights, as the reference does
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps).type(x.dtype)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """The encoder's fixed sinusoidal position embedding."""
    # explicit CPU tensors: under build_model's meta-device context these ops would pull in torch._dynamo (1.5 s)
    log_timescale_increment = torch.log(torch.tensor(max_timescale, device="cpu")) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2, device="cpu"))
    scaled_time = torch.arange(length, device="cpu")[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1)


@dataclass
class KVCache:
    """Decoder state for one batch of sequences that all have ``length`` tokens so far.

    self_k/self_v: (n_layer, batch, n_head, n_text_ctx, d_head), filled up to ``length``.
    cross_k/cross_v: (n_layer, batch // group, n_head, n_audio_ctx, d_head), computed once per window
    and shared by the ``group`` consecutive sequences (beams or samples) of each audio.
    """

    self_k: Tensor
    self_v: Tensor
    cross_k: Tensor
    cross_v: Tensor
    length: int = 0
    group: int = 1

    @property
    def batch_size(self) -> int:
        return self.self_k.shape[1]

    def reorder(self, source_indices) -> None:
        """Sequence b continues sequence ``source_indices[b]`` (beam search); cross K/V are per audio and stay."""
        n = self.length
        with torch.inference_mode():  # the engine made the cache in inference mode; the decoding loop calls this outside it
            source_indices = torch.as_tensor(source_indices, device=self.self_k.device)
            self.self_k[:, :, :, :n] = self.self_k[:, source_indices, :, :n]
            self.self_v[:, :, :, :n] = self.self_v[:, source_indices, :, :n]

    def rewind(self, length: int) -> None:
        self.length = length


class MultiHeadAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = Linear(n_state, n_state)
        self.key = Linear(n_state, n_state, bias=False)
        self.value = Linear(n_state, n_state)
        self.out = Linear(n_state, n_state)

    def heads(self, x: Tensor) -> Tensor:
        """(batch, time, state) -> (batch, head, time, d_head)"""
        b, t, _ = x.shape
        return x.view(b, t, self.n_head, -1).transpose(1, 2)

    def merge(self, x: Tensor) -> Tensor:
        b, _, t, _ = x.shape
        return x.transpose(1, 2).reshape(b, t, -1)

    def forward(self, x: Tensor) -> Tensor:
        """Unmasked self-attention (the encoder)."""
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        return self.out(self.merge(F.scaled_dot_product_attention(q, k, v)))

    def cached_self_attention(self, x: Tensor, k_cache: Tensor, v_cache: Tensor, offset: int) -> Tensor:
        """Causal self-attention of new tokens x against the cache, which this call extends in place."""
        t = x.shape[1]
        q = self.heads(self.query(x))
        k_cache[:, :, offset : offset + t] = self.heads(self.key(x))
        v_cache[:, :, offset : offset + t] = self.heads(self.value(x))
        k, v = k_cache[:, :, : offset + t], v_cache[:, :, : offset + t]
        mask = None
        if t > 1:  # token i sees the cache and new tokens up to itself
            mask = torch.ones(t, offset + t, dtype=torch.bool, device=x.device).tril(diagonal=offset)
        return self.out(self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))

    def cross_attention(self, x: Tensor, k: Tensor, v: Tensor, group: int = 1) -> Tensor:
        """Attention of x (batch, tokens, state) to the audio's K/V (batch // group, head, frames, d_head)."""
        q = self.heads(self.query(x))
        if group == 1:
            return self.out(self.merge(F.scaled_dot_product_attention(q, k, v)))
        # the group's queries attend to their one audio together: K/V are read once, not once per beam
        b, h, t, d = q.shape
        q = q.view(b // group, group, h, t, d).transpose(1, 2).reshape(b // group, h, group * t, d)
        out = F.scaled_dot_product_attention(q, k, v).view(b // group, h, group, t, d).transpose(1, 2).reshape(b, h, t, d)
        return self.out(self.merge(out))

    def cross_attention_logits(self, x: Tensor, k: Tensor, group: int = 1) -> Tensor:
        """Pre-softmax scaled cross-attention scores (batch, head, tokens, frames), for word timing."""
        q = self.heads(self.query(x))
        k = k.repeat_interleave(group, dim=0) if group > 1 else k
        return (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int, cross_attention: bool = False):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.cross_attn = MultiHeadAttention(n_state, n_head) if cross_attention else None
        self.cross_attn_ln = LayerNorm(n_state) if cross_attention else None
        self.mlp = nn.Sequential(Linear(n_state, 4 * n_state), nn.GELU(), Linear(4 * n_state, n_state))
        self.mlp_ln = LayerNorm(n_state)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))

    def decode(self, x: Tensor, cache: KVCache, layer: int, cross_logits: list | None = None) -> Tensor:
        x = x + self.attn.cached_self_attention(self.attn_ln(x), cache.self_k[layer], cache.self_v[layer], cache.length)
        h = self.cross_attn_ln(x)
        if cross_logits is not None:
            cross_logits.append(self.cross_attn.cross_attention_logits(h, cache.cross_k[layer], cache.group))
        x = x + self.cross_attn.cross_attention(h, cache.cross_k[layer], cache.cross_v[layer], cache.group)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int, n_ctx: int, n_state: int, n_head: int, n_layer: int):
        super().__init__()
        self.conv1 = Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, n_state))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer))
        self.ln_post = LayerNorm(n_state)

    def forward(self, mel: Tensor) -> Tensor:
        """mel (batch, n_mels, 2 * n_ctx) -> audio features (batch, n_ctx, n_state)"""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        if x.shape[1:] != self.positional_embedding.shape:
            raise ValueError(f"encoder expects {2 * self.positional_embedding.shape[0]} mel frames, got {mel.shape[-1]}")
        x = x + self.positional_embedding.to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, n_vocab: int, n_ctx: int, n_state: int, n_head: int, n_layer: int):
        super().__init__()
        self.token_embedding = Embedding(n_vocab, n_state)
        self.positional_embedding = nn.Parameter(torch.empty(n_ctx, n_state))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(n_state, n_head, cross_attention=True) for _ in range(n_layer))
        self.ln = LayerNorm(n_state)
        # the output projection; None multiplies by the token embedding (tied weights), int8 sets a quantized copy
        self.logits_proj: nn.Module | None = None

    def forward(self, tokens: Tensor, cache: KVCache, cross_logits: list | None = None) -> Tensor:
        """Logits (batch, new tokens, vocab) for ``tokens`` appended after the cached ones; advances the cache."""
        offset, t = cache.length, tokens.shape[-1]
        if offset + t > self.positional_embedding.shape[0]:
            raise ValueError(f"decoder context is {self.positional_embedding.shape[0]} tokens, asked for {offset + t}")
        x = self.token_embedding(tokens) + self.positional_embedding[offset : offset + t]
        x = x.to(cache.cross_k.dtype)
        for layer, block in enumerate(self.blocks):
            x = block.decode(x, cache, layer, cross_logits)
        cache.length = offset + t
        x = self.ln(x)
        if self.logits_proj is not None:
            return self.logits_proj(x).float()
        return (x @ self.token_embedding.weight.to(x.dtype).T).float()


class Whisper(nn.Module):
    def __init__(self, dims: ModelDimensions):
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer)
        self.decoder = TextDecoder(dims.n_vocab, dims.n_text_ctx, dims.n_text_state, dims.n_text_head, dims.n_text_layer)

    @property
    def device(self) -> torch.device:
        return self.decoder.positional_embedding.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.positional_embedding.dtype

    @property
    def is_multilingual(self) -> bool:
        return self.dims.is_multilingual

    @property
    def num_languages(self) -> int:
        return self.dims.num_languages

    def embed_audio(self, mel: Tensor) -> Tensor:
        return self.encoder(mel.to(self.device, self.dtype))

    def new_cache(self, audio_features: Tensor, repeat: int = 1) -> KVCache:
        """A fresh cache whose cross-attention K/V are computed once from the audio features.

        ``repeat`` > 1 gives each audio that many consecutive rows (beams or samples); they share
        the audio's cross K/V, which are stored once.
        """
        dims, dtype, device = self.dims, audio_features.dtype, audio_features.device
        batch, d_head = audio_features.shape[0] * repeat, dims.n_text_state // dims.n_text_head
        cross_k, cross_v = [], []
        for block in self.decoder.blocks:
            attn = block.cross_attn
            cross_k.append(attn.heads(attn.key(audio_features)))
            cross_v.append(attn.heads(attn.value(audio_features)))
        shape = (dims.n_text_layer, batch, dims.n_text_head, dims.n_text_ctx, d_head)
        return KVCache(
            self_k=torch.zeros(shape, dtype=dtype, device=device),
            self_v=torch.zeros(shape, dtype=dtype, device=device),
            cross_k=torch.stack(cross_k),
            cross_v=torch.stack(cross_v),
            group=repeat,
        )

    def decode(self, tokens: Tensor, cache: KVCache) -> Tensor:
        """Logits for new tokens given the cache (which advances)."""
        return self.decoder(tokens.to(self.device), cache)

    def logits(self, tokens: Tensor, audio_features: Tensor) -> Tensor:
        """All-position logits for whole token sequences, without reusing any earlier state."""
        return self.decoder(tokens.to(self.device), self.new_cache(audio_features))

    def cross_attention_logits(self, tokens: Tensor, audio_features: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and, per decoder layer, the pre-softmax cross-attention scores for whole sequences."""
        cross: list[Tensor] = []
        logits = self.decoder(tokens.to(self.device), self.new_cache(audio_features), cross_logits=cross)
        return logits, cross

    def forward(self, mel: Tensor, tokens: Tensor) -> Tensor:
        return self.logits(tokens, self.embed_audio(mel))


def build_model(checkpoint, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Whisper:
    """A Whisper module with the checkpoint's weights on the given device and dtype."""
    with torch.device("meta"):
        model = Whisper(checkpoint.dims)
    state = dict(checkpoint.state_dict)
    state.setdefault("encoder.positional_embedding", sinusoids(checkpoint.dims.n_audio_ctx, checkpoint.dims.n_audio_state))
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval()
