"""Each decoding part alone, on synthetic logits: filters, selectors, the ranker."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from tingxie.decoding.filters import ApplyTimestampRules, BoostTokens, SuppressBlank, SuppressTokens, suppress_token_ids
from tingxie.decoding.selectors import BeamSearchSelector, GreedySelector, MaximumLikelihoodRanker
from tingxie.decoding.window import compression_ratio

EOT, TS = 10, 20  # toy vocabulary: text 0..9, eot 10, specials 11..19, timestamps 20..29
V = 30


def test_suppress_blank_only_at_first_sampled_position():
    f = SuppressBlank([3], EOT, sample_begin=2)
    logits = torch.zeros(1, V)
    f.apply(logits.numpy(), torch.tensor([[1, 2]]).numpy())
    assert logits[0, 3] == -math.inf and logits[0, EOT] == -math.inf and logits[0, 4] == 0
    later = torch.zeros(1, V)
    f.apply(later.numpy(), torch.tensor([[1, 2, 5]]).numpy())
    assert torch.all(later == 0)


def test_suppress_tokens():
    logits = torch.zeros(2, V)
    SuppressTokens([1, 7]).apply(logits.numpy(), torch.zeros(2, 1, dtype=torch.long).numpy())
    assert torch.all(logits[:, [1, 7]] == -math.inf) and logits[:, [0, 2]].eq(0).all()


def test_suppress_token_ids_expands_minus_one():
    ids = suppress_token_ids("-1,5", non_speech_tokens=[8, 9], always=[11])
    assert ids == (5, 8, 9, 11)
    assert suppress_token_ids("", [8], [11]) == (11,)
    assert suppress_token_ids([2, 3], [8], [11]) == (2, 3, 11)


def rules(max_initial=None) -> ApplyTimestampRules:
    return ApplyTimestampRules(timestamp_begin=TS, eot=EOT, no_timestamps=19, sample_begin=1, max_initial_timestamp_index=max_initial)


def allowed(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(logits[0] > -math.inf).flatten().tolist())


def test_first_token_is_a_timestamp_within_max_initial():
    logits = torch.zeros(1, V)
    rules(max_initial=3).apply(logits.numpy(), torch.tensor([[0]]).numpy())
    assert allowed(logits) == {20, 21, 22, 23}


def test_after_lone_timestamp_only_timestamps_or_end():
    logits = torch.zeros(1, V)
    logits[0, EOT] = 5.0  # keep the end likely so the forcing rule does not fire
    rules().apply(logits.numpy(), torch.tensor([[0, 20, 5, 25]]).numpy())
    # text forbidden, timestamps before 25 forbidden; 25 itself closes the segment's pair
    assert allowed(logits) == {EOT, 11, 12, 13, 14, 15, 16, 17, 18} | set(range(25, 30))


def test_after_timestamp_pair_text_must_follow_and_time_never_goes_back():
    logits = torch.zeros(1, V)
    rules().apply(logits.numpy(), torch.tensor([[0, 20, 5, 24, 24]]).numpy())
    assert all(t not in allowed(logits) for t in range(TS, V))
    logits = torch.zeros(1, V)
    logits[0, 0] = 5.0  # a likely text token, so the forcing rule does not fire
    rules().apply(logits.numpy(), torch.tensor([[0, 20, 5, 24, 24, 6]]).numpy())
    assert allowed(logits) >= {0, 1, 25} and not ({20, 21, 22, 23, 24} & allowed(logits))


def test_timestamp_forced_when_timestamps_together_outweigh_any_text():
    logits = torch.full((1, V), -10.0)
    logits[0, 3] = 1.0  # best single text token
    logits[0, TS + 2 : TS + 8] = 0.5  # six timestamps, together more likely
    rules().apply(logits.numpy(), torch.tensor([[0, 20, 5]]).numpy())
    assert all(logits[0, t] == -math.inf for t in range(TS))


def test_boost_tokens():
    logits = torch.zeros(1, V)
    BoostTokens({4: 2.0}).apply(logits.numpy(), torch.zeros(1, 1, dtype=torch.long).numpy())
    assert logits[0, 4] == 2.0 and logits[0, 5] == 0


def test_greedy_selector_pads_finished_with_eot_and_sums_logprobs():
    sel = GreedySelector(0.0, EOT)
    tokens = np.array([[1, 2], [1, EOT]])
    logits = torch.zeros(2, V)
    logits[:, 7] = 5.0
    sums = np.zeros(2, np.float32)
    tokens, done, _ = sel.update(tokens, logits.numpy(), sums)
    assert tokens[:, -1].tolist() == [7, EOT] and not done
    assert sums[0] == pytest.approx(torch.log_softmax(logits[0], -1)[7].item()) and sums[1] == 0


def test_sampling_selector_follows_temperature():
    sel = GreedySelector(1.0, EOT, np.random.default_rng(0))
    logits = torch.full((1, V), -30.0)
    logits[0, 2], logits[0, 3] = 0.0, 0.0
    seen = {sel.update(np.array([[1]]), logits.numpy().copy(), np.zeros(1, np.float32))[0][0, -1].item() for _ in range(40)}
    assert seen == {2, 3}


def toy_lm(prefix: tuple[int, ...]) -> torch.Tensor:
    """A deterministic next-token distribution over 4 text tokens and eot, depending on the prefix."""
    g = torch.Generator().manual_seed(hash(prefix) % (2**31))
    logits = torch.full((V,), -1e9)
    logits[[0, 1, 2, 3, EOT]] = torch.randn(5, generator=g) * 2
    if len(prefix) >= 4:
        logits[EOT] = 10.0  # sequences end by length 4
    return logits


def exhaustive_best(start: tuple[int, ...]) -> tuple[tuple[int, ...], float]:
    best, best_score = None, -math.inf
    for n in range(0, 4):
        for body in itertools.product([0, 1, 2, 3], repeat=n):
            seq, lp = start, 0.0
            for t in (*body, EOT):
                lp += torch.log_softmax(toy_lm(seq), -1)[t].item()
                seq = (*seq, t)
            if lp > best_score:
                best, best_score = seq, lp
    return best, best_score


def test_beam_search_with_wide_beam_finds_the_most_likely_sequence():
    beam = 25  # topk(beam + 1) must fit the toy vocabulary of 30
    sel = BeamSearchSelector(beam_size=beam, eot=EOT, patience=2.0)
    tokens = np.array([[99]] * beam)
    sums = np.zeros(beam, np.float32)
    for _ in range(6):
        logits = torch.stack([toy_lm(tuple(t)) for t in tokens.tolist()]).numpy()
        tokens, done, source = sel.update(tokens, logits, sums)
        if done:
            break
    cands, scores = sel.finalize(tokens.reshape(1, beam, -1), sums.reshape(1, beam))
    i = max(range(len(scores[0])), key=scores[0].__getitem__)
    want, want_score = exhaustive_best((99,))
    assert tuple(cands[0][i]) == want
    assert scores[0][i] == pytest.approx(want_score, abs=1e-4)


def test_beam_search_patience_sets_candidate_count():
    assert BeamSearchSelector(5, EOT, patience=2.0).max_candidates == 10
    assert BeamSearchSelector(5, EOT).max_candidates == 5


def test_ranker_length_normalisation_and_penalty():
    tokens = [[[1] * 2, [1] * 10]]
    logprobs = [[-2.0, -6.0]]
    assert MaximumLikelihoodRanker(None).rank(tokens, logprobs) == [1]  # -1.0/token vs -0.6/token
    assert MaximumLikelihoodRanker(0.0).rank(tokens, logprobs) == [0]  # no normalisation: raw sum


def test_compression_ratio_is_high_for_loops():
    assert compression_ratio("the cat " * 40) > 2.4 > compression_ratio("And so my fellow Americans, ask not what your country can do for you")


def test_ranker_takes_an_empty_candidate():
    # a window that ends at once (silence) leaves a candidate with no tokens; it must rank, not crash
    tokens = [[[], [5, 6]]]
    assert MaximumLikelihoodRanker(None).rank(tokens, [[-0.1, -4.0]]) == [0]
    assert MaximumLikelihoodRanker(1.0).rank(tokens, [[-9.0, -1.0]]) == [1]
