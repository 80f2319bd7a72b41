"""Tier 2: the two engines behind one interface agree on a tiny random model: the encoder's features, every
decoder layer of the two forward definitions (model.py's decoder and the exported step, ``DecoderStepGraph``), the
alignment heads' cross-attention, and whole window decodes (greedy, beam search, sampling) through the one decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tingxie.decoding.decoder import decode
from tingxie.engine import Engine
from tingxie.model import Whisper
from tingxie.options import DecodingOptions
from tingxie.ort.export import DecoderStepGraph, LogitsGraph, export_module
from tingxie.ort.runtime import OrtWhisper
from tingxie.tokenizer import get_tokenizer
from tingxie.torch_engine import TorchEngine
from tingxie.weights.checkpoint import ModelDimensions

DIMS = ModelDimensions(n_mels=80, n_audio_ctx=8, n_audio_state=32, n_audio_head=2, n_audio_layer=2,
                       n_vocab=51864, n_text_ctx=48, n_text_state=32, n_text_head=2, n_text_layer=3)


@pytest.fixture(scope="module")
def engines(tmp_path_factory) -> tuple[TorchEngine, OrtWhisper]:
    torch.manual_seed(0)
    model = Whisper(DIMS).eval()
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0, 1.0)
        model.decoder.token_embedding.weight[50256].mul_(6.0)  # the end of text reachable: beams end at different lengths
    folder = tmp_path_factory.mktemp("onnx") / "random"
    export_module(model, folder, "default")
    return TorchEngine(model), OrtWhisper(folder, threads=1)


def test_both_implement_the_engine_interface(engines):
    assert all(isinstance(e, Engine) for e in engines)


def test_every_decoder_layer_of_the_two_definitions_agrees(engines):
    """Each block's MLP output (which depends on every layer below it) from model.py's cached decoder and from the
    step graph's own attention arithmetic, run eagerly in PyTorch: the two forward definitions, layer by layer."""
    torch_engine, _ = engines
    model = torch_engine.module
    mel = torch.randn(1, 80, 2 * DIMS.n_audio_ctx)
    tokens = torch.randint(0, DIMS.n_vocab, (1, 6))
    seen: dict[str, list[torch.Tensor]] = {"model": [], "graph": []}

    def hook(name):
        return lambda module, args, out: seen[name].append(out.detach().clone())

    with torch.no_grad():
        features = model.embed_audio(mel)
        cache = model.new_cache(features)
        handles = [block.mlp.register_forward_hook(hook("model")) for block in model.decoder.blocks]
        expected = model.decode(tokens, cache)
        for h in handles:
            h.remove()
        graph = DecoderStepGraph(model)
        handles = [block.mlp.register_forward_hook(hook("graph")) for block in model.decoder.blocks]
        d_head = DIMS.n_text_state // DIMS.n_text_head
        n = DIMS.n_text_layer
        empty = [torch.zeros(1, DIMS.n_text_head, 0, d_head) for _ in range(4 * n)]
        cross = list(cache.cross_k) + [v.transpose(-1, -2) for v in cache.cross_v]
        mask = torch.triu(torch.full((6, 6), float("-inf")), diagonal=1)
        no_heads = [torch.zeros(0, dtype=torch.long) for _ in range(n)]
        hidden, *_ = graph(tokens, torch.arange(6), mask, torch.arange(6), *empty, *cross, *no_heads)
        logits = LogitsGraph(model)(hidden)
        for h in handles:
            h.remove()
    assert len(seen["model"]) == len(seen["graph"]) == n
    for layer, (a, b) in enumerate(zip(seen["model"], seen["graph"])):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=f"decoder layer {layer}")
    torch.testing.assert_close(logits, expected, atol=1e-3, rtol=1e-4)


def test_the_alignment_heads_give_the_torch_engine_s_cross_attention(engines):
    """The decoder graph's cross_scores output (heads asked for out of layer order) equals PyTorch's cross-attention."""
    torch_engine, ort_engine = engines
    mel = np.random.default_rng(2).standard_normal((1, 80, 2 * DIMS.n_audio_ctx)).astype(np.float32)
    tokens = np.random.default_rng(3).integers(0, DIMS.n_vocab, (1, 9))
    heads = [(2, 1), (0, 0), (1, 1)]
    logprobs_t, scores_t = torch_engine.alignment_scores(tokens, torch_engine.encode(mel), heads, 50)
    logprobs_o, scores_o = ort_engine.alignment_scores(tokens, ort_engine.encode(mel), heads, 50)
    assert scores_o.shape == (3, 9, DIMS.n_audio_ctx) and logprobs_o.shape == (8,)
    np.testing.assert_allclose(scores_o, scores_t, atol=1e-4)
    np.testing.assert_allclose(logprobs_o, logprobs_t, atol=1e-3)
    assert np.isneginf(logprobs_o[tokens[0, 1:] >= 50]).all() and np.isfinite(logprobs_o[tokens[0, 1:] < 50]).all()


def test_alignment_in_chunks_equals_one_pass(engines, monkeypatch):
    """The ONNX Runtime engine aligns a long sequence a chunk of tokens at a time (bounded logits): the same scores
    and log-probabilities as in one call."""
    # (the prompt's chunks: test_a_prompt_in_chunks_decodes_as_the_torch_engine)
    from tingxie.ort import runtime

    _, ort_engine = engines
    features = ort_engine.encode(np.random.default_rng(5).standard_normal((1, 80, 2 * DIMS.n_audio_ctx)).astype(np.float32))
    tokens = np.random.default_rng(6).integers(0, DIMS.n_vocab, (1, 11))
    whole = ort_engine.alignment_scores(tokens, features, [(0, 1), (1, 0)], DIMS.n_vocab)
    monkeypatch.setattr(runtime, "SEQUENCE_CHUNK", 4)
    chunked = ort_engine.alignment_scores(tokens, features, [(0, 1), (1, 0)], DIMS.n_vocab)
    np.testing.assert_allclose(chunked[0], whole[0], atol=1e-4)
    np.testing.assert_allclose(chunked[1], whole[1], atol=1e-4)


@pytest.mark.parametrize("options", [
    DecodingOptions(language="en", temperature=0.0),
    DecodingOptions(language="en", temperature=0.0, beam_size=3),
    DecodingOptions(language="en", temperature=0.0, beam_size=2, prompt=(1, 2, 3), hotwords="Kubernetes", hotword_boost=50.0),
    DecodingOptions(language="en", temperature=0.8, best_of=2),
], ids=["greedy", "beam3", "beam2_prompt_hotwords", "best_of_2"])
def test_a_batch_of_windows_decodes_alike_on_both_engines(engines, options):
    torch_engine, ort_engine = engines
    mel = np.random.default_rng(4).standard_normal((3, 80, 2 * DIMS.n_audio_ctx)).astype(np.float32)
    tokenizer = get_tokenizer(False)
    runs = [decode(e, mel, tokenizer, options, generator=np.random.default_rng(7)) for e in engines]
    assert [r.tokens for r in runs[0]] == [r.tokens for r in runs[1]]
    assert [r.sum_logprob for r in runs[0]] == pytest.approx([r.sum_logprob for r in runs[1]], abs=1e-2)
    assert any(r.tokens for r in runs[0]), "the random model produced nothing to compare"


def test_a_prompt_in_chunks_decodes_as_the_torch_engine(engines, monkeypatch):
    """A window's first call (prompt + start tokens) runs a few tokens per decoder call on ONNX Runtime: beams and
    scores as the torch engine's whole-sequence call."""
    from tingxie.ort import runtime

    monkeypatch.setattr(runtime, "SEQUENCE_CHUNK", 2)
    options = DecodingOptions(language="en", temperature=0.0, beam_size=2, prompt=tuple(range(1, 10)))
    mel = np.random.default_rng(8).standard_normal((2, 80, 2 * DIMS.n_audio_ctx)).astype(np.float32)
    runs = [decode(e, mel, get_tokenizer(False), options, generator=np.random.default_rng(7)) for e in engines]
    assert [r.tokens for r in runs[0]] == [r.tokens for r in runs[1]]
    assert [r.sum_logprob for r in runs[0]] == pytest.approx([r.sum_logprob for r in runs[1]], abs=1e-2)
