"""Greedy, beam search and sampling on a tiny random model: the cached decoder equals an eager one that
recomputes every sequence from scratch at each step, and a batch of windows equals each window alone."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tingxie.decoding.decoder import decode
from tingxie.model import Whisper
from tingxie.options import DecodingOptions
from tingxie.tokenizer import get_tokenizer
from tingxie.torch_engine import TorchEngine, TorchFeatures
from tingxie.weights.checkpoint import ModelDimensions

DIMS = ModelDimensions(n_mels=80, n_audio_ctx=8, n_audio_state=32, n_audio_head=2, n_audio_layer=2,
                       n_vocab=51864, n_text_ctx=48, n_text_state=32, n_text_head=2, n_text_layer=2)


@pytest.fixture(scope="module")
def model() -> TorchEngine:
    torch.manual_seed(0)
    m = Whisper(DIMS)
    with torch.no_grad():
        m.decoder.positional_embedding.normal_(0, 1.0)  # positions vary the output, so beams diverge
        # make the end of text reachable so beams finish at different lengths
        m.decoder.token_embedding.weight[50256].mul_(6.0)
    return TorchEngine(m.eval())


@pytest.fixture(scope="module")
def features(model) -> TorchFeatures:
    torch.manual_seed(1)
    return model.encode(torch.randn(3, 80, 2 * DIMS.n_audio_ctx).numpy())


@dataclass
class HistoryCache:
    """Stands in for the KV cache: remembers whole sequences, so each step is an eager forward pass."""

    features: torch.Tensor
    history: np.ndarray

    def reorder(self, source_indices: np.ndarray) -> None:
        self.history = self.history[source_indices]


class EagerModel(TorchEngine):
    """The engine interface, decoding without any cached state."""

    def __init__(self, engine: TorchEngine):
        super().__init__(engine.module)

    def new_cache(self, features: TorchFeatures, repeat: int = 1) -> HistoryCache:
        feats = features.tensor.repeat_interleave(repeat, dim=0)
        return HistoryCache(feats, np.zeros((feats.shape[0], 0), np.int64))

    @torch.inference_mode()
    def decode(self, tokens: np.ndarray, cache: HistoryCache, select=None, rows=None) -> np.ndarray:
        cache.history = np.concatenate([cache.history, tokens], axis=1)
        logits = self.module.logits(torch.from_numpy(cache.history), cache.features)[:, -tokens.shape[1] :]
        return (logits if select is None else logits[:, list(select)]).float().numpy()


OPTIONS = {
    "greedy": DecodingOptions(language="en", temperature=0.0),
    "greedy_no_timestamps": DecodingOptions(language="en", temperature=0.0, without_timestamps=True),
    "beam3": DecodingOptions(language="en", temperature=0.0, beam_size=3),
    "beam4_patience2": DecodingOptions(language="en", temperature=0.0, beam_size=4, patience=2.0),
    "beam3_length_penalty": DecodingOptions(language="en", temperature=0.0, beam_size=3, length_penalty=0.5),
    "best_of_3": DecodingOptions(language="en", temperature=0.7, best_of=3),
}


def run(model, features, options) -> list[tuple[list[int], float]]:
    tokenizer = get_tokenizer(False)
    results = decode(model, features, tokenizer, options, generator=np.random.default_rng(7))
    return [(r.tokens, r.sum_logprob) for r in results]


@pytest.mark.parametrize("name", OPTIONS)
def test_cached_decoder_equals_eager(model, features, name):
    cached = run(model, features, OPTIONS[name])
    eager = run(EagerModel(model), features, OPTIONS[name])
    assert [t for t, _ in cached] == [t for t, _ in eager]
    assert [s for _, s in cached] == pytest.approx([s for _, s in eager], abs=1e-3)
    assert any(len(t) > 0 for t, _ in cached), "the random model produced nothing to compare"


@pytest.mark.parametrize("name", ["greedy", "beam3", "beam4_patience2"])
def test_batch_equals_each_window_alone(model, features, name):
    batched = run(model, features, OPTIONS[name])
    alone = [run(model, features.select(i), OPTIONS[name])[0] for i in range(features.n_audio)]
    assert [t for t, _ in batched] == [t for t, _ in alone]
    assert [s for _, s in batched] == pytest.approx([s for _, s in alone], abs=1e-3)

