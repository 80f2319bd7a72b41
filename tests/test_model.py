"""A tiny random model: cached, batched and eager paths must agree; the real checkpoint loads."""

from __future__ import annotations

import pytest
import torch

from tingxie.model import KVCache, Whisper, build_model, sinusoids
from tingxie.weights.checkpoint import Checkpoint, ModelDimensions

DIMS = ModelDimensions(n_mels=80, n_audio_ctx=8, n_audio_state=16, n_audio_head=2, n_audio_layer=2,
                       n_vocab=51864, n_text_ctx=12, n_text_state=16, n_text_head=2, n_text_layer=2)


@pytest.fixture(scope="module")
def model() -> Whisper:
    torch.manual_seed(0)
    m = Whisper(DIMS)
    with torch.no_grad():
        m.decoder.positional_embedding.normal_(0, 0.1)
    return m.eval()


@pytest.fixture(scope="module")
def features(model) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return model.embed_audio(torch.randn(2, 80, 2 * DIMS.n_audio_ctx))


def test_cached_decoding_equals_eager(model, features):
    tokens = torch.randint(0, 50000, (2, 9))
    with torch.no_grad():
        eager = model.logits(tokens, features)
        cache = model.new_cache(features)
        prefill = model.decode(tokens[:, :4], cache)
        steps = [model.decode(tokens[:, i : i + 1], cache) for i in range(4, 9)]
    cached = torch.cat([prefill, *steps], dim=1)
    assert cache.length == 9
    torch.testing.assert_close(cached, eager, rtol=1e-4, atol=1e-4)


def test_batched_equals_single(model, features):
    tokens = torch.randint(0, 50000, (2, 6))
    with torch.no_grad():
        batched = model.logits(tokens, features)
        singles = [model.logits(tokens[i : i + 1], features[i : i + 1]) for i in range(2)]
    torch.testing.assert_close(batched, torch.cat(singles), rtol=1e-4, atol=1e-4)


def test_cache_reorder_follows_beams(model, features):
    tokens = torch.randint(0, 50000, (3, 5))
    feats = features[:1].expand(3, -1, -1)
    with torch.no_grad():
        cache = model.new_cache(feats)
        model.decode(tokens, cache)
        cache.reorder(torch.tensor([2, 2, 0]))
        nxt = torch.randint(0, 50000, (3, 1))
        got = model.decode(nxt, cache)
        want = model.logits(torch.cat([tokens[[2, 2, 0]], nxt], dim=1), feats)[:, -1:]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_repeat_gives_each_audio_consecutive_rows(model, features):
    cache = model.new_cache(features, repeat=3)
    assert cache.batch_size == 6 and cache.group == 3
    assert cache.cross_k.shape[1] == 2  # the cross K/V of each audio are stored once for its 3 rows
    assert not torch.equal(cache.cross_k[:, 0], cache.cross_k[:, 1])


def test_grouped_cross_attention_equals_repeated_rows(model, features):
    tokens = torch.randint(0, 50000, (6, 4))
    with torch.inference_mode():
        grouped = model.decode(tokens, model.new_cache(features, repeat=3))
        repeated = model.decode(tokens, model.new_cache(features.repeat_interleave(3, dim=0)))
    torch.testing.assert_close(grouped, repeated, rtol=1e-5, atol=1e-5)


def test_context_overflow_is_an_error(model, features):
    cache = model.new_cache(features)
    with pytest.raises(ValueError, match="context"):
        model.decode(torch.zeros(2, DIMS.n_text_ctx + 1, dtype=torch.long), cache)


def test_cross_attention_logits_shape(model, features):
    tokens = torch.randint(0, 50000, (1, 5))
    logits, cross = model.cross_attention_logits(tokens, features[:1])
    assert len(cross) == DIMS.n_text_layer
    assert cross[0].shape == (1, DIMS.n_text_head, 5, DIMS.n_audio_ctx)
    torch.testing.assert_close(logits, model.logits(tokens, features[:1]))


def test_build_model_from_state_dict_round_trip(model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rebuilt = build_model(Checkpoint(dims=DIMS, state_dict=state), dtype=torch.float32)
    mel = torch.randn(1, 80, 16)
    tokens = torch.randint(0, 50000, (1, 4))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(mel, tokens), model(mel, tokens))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_close_to_float32(model, dtype):
    half = build_model(Checkpoint(dims=DIMS, state_dict=dict(model.state_dict())), dtype=dtype)
    mel = torch.randn(1, 80, 16)
    tokens = torch.randint(0, 50000, (1, 4))
    with torch.no_grad():
        ref, got = model(mel, tokens), half(mel, tokens)
    assert got.dtype == torch.float32  # logits are always float32
    assert (got - ref).abs().max() < 0.1 * ref.abs().max()


def test_sinusoids_match_encoder_formula():
    s = sinusoids(4, 6)
    assert s.shape == (4, 6)
    torch.testing.assert_close(s[0], torch.tensor([0.0, 0, 0, 1, 1, 1]))


def test_real_checkpoint_dims(tiny_en_torch):
    dims = tiny_en_torch.dims
    assert (dims.n_audio_layer, dims.n_text_layer, dims.n_audio_state, dims.n_vocab) == (4, 4, 384, 51864)
    assert not tiny_en_torch.is_multilingual
    assert tiny_en_torch.alignment_heads == [(1, 0), (2, 0), (2, 5), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)]
    assert isinstance(tiny_en_torch.module.new_cache(torch.zeros(1, 1500, 384)), KVCache)
