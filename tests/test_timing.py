"""Word timing's pure parts on synthetic data: the median filter (a sorting network, compiled for width 7) against a
sort of every window, and the compiled DTW against the NumPy fill, ties and NaN columns included."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tingxie import timing


def _sorted_median(x: np.ndarray, width: int) -> np.ndarray:
    pad = width // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    return np.sort(np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1), axis=-1)[..., pad]


@pytest.mark.parametrize("width", [1, 3, 7, 9])
def test_the_median_filter_gives_each_window_s_sorted_middle_value(width):
    rng = np.random.default_rng(width)
    for _ in range(10):
        x = rng.standard_normal((3, 5, 40)).astype(np.float32)
        x[rng.random(x.shape) < 0.2] = 0.5  # ties
        x[rng.random(x.shape) < 0.15] = np.nan  # a constant column's standardisation gives NaN
        x[rng.random(x.shape) < 0.05] = np.inf
        x[rng.random(x.shape) < 0.05] = -np.inf
        x[:, :, 7:12] = np.nan
        np.testing.assert_array_equal(timing.median_filter(x, width), _sorted_median(x, width))


def test_the_median_filter_refuses_an_even_width():
    with pytest.raises(ValueError, match="odd"):
        timing.median_filter(np.zeros((2, 10), np.float32), 4)


def test_the_compiled_median_filter_gives_the_numpy_network_s_values():
    if timing._timing_library() is None:
        pytest.skip("tingxie/_timing not built here (optional); CI checks that it is")
    rng = np.random.default_rng(7)
    for n in [4, 5, 6, 7, 8, 13, 64, 1500]:
        x = rng.standard_normal((2, 3, n)).astype(np.float32)
        x[rng.random(x.shape) < 0.1] = np.nan
        x[0, 0, : min(n, 5)] = np.nan  # a run of NaN: the middle rank is NaN where 4 of 7 are
        expected = np.stack([timing._median_rows(x[i], 7) for i in range(2)])
        np.testing.assert_array_equal(timing.median_filter(x, 7), expected)
        np.testing.assert_array_equal(timing.median_filter(x, 7), _sorted_median(x, 7))


def test_the_compiled_dtw_is_built_where_ci_runs():
    if os.environ.get("CI"):
        assert timing._timing_library() is not None, "tingxie/_timing was not built (setup.py's optional extension)"
    else:
        pytest.skip("the compiled DTW is optional outside CI")


def test_the_compiled_dtw_takes_the_numpy_fill_s_path():
    if timing._timing_library() is None:
        pytest.skip("tingxie/_timing not built here (optional); CI checks that it is")
    rng = np.random.default_rng(1)
    for trial in range(150):
        n, m = int(rng.integers(1, 25)), int(rng.integers(1, 50))
        cost = rng.standard_normal((n, m))
        if trial % 3 == 0:
            cost = np.round(cost, 1)  # ties: diagonal, then up, then left
        if trial % 5 == 0:
            cost[:, rng.integers(0, m)] = np.nan
        expected = timing._backtrace(timing._dtw_trace_numpy(cost))
        got = timing.dtw(cost)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected)), trial


def test_the_dtw_path_is_monotonic_and_follows_the_cheap_cells():
    cost = np.ones((3, 6))
    cost[0, :2] = cost[1, 2:4] = cost[2, 4:] = 0.0  # token 0 at frames 0-1, token 1 at 2-3, token 2 at 4-5
    text, time = timing.dtw(cost)
    assert text.tolist() == [0, 0, 1, 1, 2, 2] and time.tolist() == [0, 1, 2, 3, 4, 5]
