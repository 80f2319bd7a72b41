"""The int8 models' bfloat16 encoder (issue 23): the product kernel (tingxie/ort/csrc/linear_bf16.c) against float64
NumPy on each of its paths (AVX512-BF16 vectors everywhere it loads, AMX tiles where the CPU has them), and on real
speech the whole encoder against the float32 export's, far closer than the int8 stages."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import audio_path

from tingxie.ort.attention import REQUIRED_FLAGS, TILE_FLAGS
from tingxie.ort.bf16_encoder import (
    ACCUMULATE,
    BF16_OUT,
    GELU,
    HEADS,
    TRANSPOSED,
    WEIGHTS_FILE,
    Bf16Encoder,
    Bf16Linear,
    bf16_rows,
    folder_weights,
    linear_library,
    pack_weight,
)
from tingxie.ort.encoder import StagedEncoder
from tingxie.ort.native import cpu_has


def _library():
    """The kernel; skipped only on a CPU without AVX512-BF16 (there the int8 stages run). Where the CPU has it the
    install must have built it, and where the CPU has AMX tiles Linux must grant them: their absence fails instead."""
    if not cpu_has(REQUIRED_FLAGS):
        pytest.skip("this CPU lacks AVX512-BF16: int8 models run the int8 encoder stages here")
    library = linear_library()
    assert library is not None, "the CPU has AVX512-BF16 but tingxie/ort/_linear_bf16*.so was not built"
    assert library.tiles == cpu_has(TILE_FLAGS), "the CPU has AMX tiles but Linux did not grant them"
    return library


def _paths() -> list[bool]:
    """The kernel's paths this CPU runs: vectors always, tiles where it has them (both are tested there)."""
    return [False, True] if cpu_has((*REQUIRED_FLAGS, *TILE_FLAGS)) else [False]


PATHS = pytest.mark.parametrize("tiles", _paths(), ids=lambda tiles: "tiles" if tiles else "vectors")


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (nearest even), as float64."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return (((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16) << 16).view(np.float32).astype(np.float64)


def test_packed_weight_is_the_tiles_layout_of_the_rounded_weight():
    w = np.random.default_rng(0).standard_normal((70, 40)).astype(np.float32)  # neither side a multiple of 32: zero-padded
    packed = pack_weight(w)
    assert packed.shape == (64 // 16, 96 // 2, 16, 2) and packed.dtype == np.uint16
    # [panel][pair][column][which of the pair] -> (k, n)
    unpacked = (packed.astype(np.uint32) << 16).view(np.float32).transpose(1, 3, 0, 2).reshape(96, 64)
    assert np.array_equal(unpacked[:70, :40], _bf16(w).astype(np.float32))
    assert not unpacked[70:].any() and not unpacked[:, 40:].any()


@PATHS
@pytest.mark.parametrize("m, k, n", [(1, 32, 16), (37, 240, 64), (100, 384, 1152), (200, 1536, 96)])  # the last: two bands of rows
def test_product_matches_float64_to_bfloat16_rounding(m, k, n, tiles):
    linear = Bf16Linear(_library(), threads=2, tiles=tiles)
    rng = np.random.default_rng(m)
    x, w, bias = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    y = np.empty((m, n), np.float32)
    linear(x, pack_weight(w), n, [y], bias)
    exact = _bf16(x) @ _bf16(w) + bias  # the operands' rounding is the design; the float32 sums add ~1e-6
    assert np.abs(y - exact).max() < 1e-4 * np.abs(exact).max()
    plain = x.astype(np.float64) @ w + bias
    assert np.linalg.norm(y - plain) / np.linalg.norm(plain) < 5e-3  # bfloat16's 8-bit mantissa, on both sides


@PATHS
def test_each_output_is_the_same_on_any_number_of_threads(tiles):
    """The work split never changes a sum's order: 1, 2 and 3 threads give the same bits."""
    rng = np.random.default_rng(3)
    m, k, n = 130, 416, 160
    x, w = rng.standard_normal((m, k)).astype(np.float32), pack_weight(rng.standard_normal((k, n)).astype(np.float32))
    outs = []
    for threads in (1, 2, 3):
        y = np.empty((m, n), np.float32)
        Bf16Linear(_library(), threads=threads, tiles=tiles)(x, w, n, [y], flags=GELU)
        outs.append(y)
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


@PATHS
def test_fused_layer_norm_gelu_accumulate_and_split_outputs(tiles):
    """LayerNorm before, GELU (erf) and an add into the old values after, one product written to two outputs, and rows
    read overlapping (a convolution's windows): each against float64 on the same bfloat16 operands."""
    linear = Bf16Linear(_library(), threads=2, tiles=tiles)
    rng = np.random.default_rng(1)
    m, k, n = 45, 128, 96
    x = (rng.standard_normal((m, k)) * 3 + 1).astype(np.float32)
    w, bias = rng.standard_normal((k, n)).astype(np.float32) / 8, rng.standard_normal(n).astype(np.float32)
    gamma, beta = rng.standard_normal(k).astype(np.float32), rng.standard_normal(k).astype(np.float32)
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * gamma + beta
    pre = _bf16(normed) @ _bf16(w) + bias
    gelu = pre * 0.5 * (1 + np.vectorize(math.erf)(pre / math.sqrt(2)))
    old = [rng.standard_normal((m, n // 2)).astype(np.float32) for _ in range(2)]
    outs = [a.copy() for a in old]
    linear(x, pack_weight(w), n, outs, bias, norm=(gamma, beta), flags=GELU | ACCUMULATE)
    got = np.concatenate(outs, axis=1) - np.concatenate(old, axis=1)
    assert np.abs(got - gelu).max() < 2e-3 * np.abs(gelu).max()  # LayerNorm's float32 statistics move a few bf16 roundings
    flat = rng.standard_normal(3 * 20 + 8).astype(np.float32)  # rows of 8 floats read 3 apart
    y = np.empty((20, 16), np.float32)
    w8 = rng.standard_normal((8, 16)).astype(np.float32)
    linear(flat, pack_weight(w8), 16, [y], rows=20, k=8, row_stride=3)
    windows = np.lib.stride_tricks.sliding_window_view(flat, 8)[::3][:20]
    assert np.abs(y - _bf16(windows) @ _bf16(w8)).max() < 1e-5 * np.abs(y).max()


@PATHS
def test_output_layouts_of_the_decoders_cross_keys_and_values(tiles):
    """HEADS writes (heads, rows, 64) per output, TRANSPOSED (cols, rows): the same numbers as the plain layout."""
    linear = Bf16Linear(_library(), threads=2, tiles=tiles)
    rng = np.random.default_rng(2)
    m, k, n = 50, 64, 256
    x, w, bias = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    packed = pack_weight(w)
    plain = [np.empty((m, n // 2), np.float32) for _ in range(2)]
    linear(x, packed, n, plain, bias)
    heads = [np.empty((n // 128, m, 64), np.float32) for _ in range(2)]
    linear(x, packed, n, heads, bias, flags=HEADS)
    columns = [np.empty((n // 2, m), np.float32) for _ in range(2)]
    linear(x, packed, n, columns, bias, flags=TRANSPOSED)
    for a, b, c in zip(plain, heads, columns):
        assert np.array_equal(a.reshape(m, -1, 64).transpose(1, 0, 2), b)
        assert np.array_equal(a.T, c)
    with pytest.raises(ValueError):
        linear(x, packed, n, heads, bias, flags=HEADS | ACCUMULATE)


@PATHS
def test_the_hidden_layer_passed_in_bfloat16_is_the_float_path_exactly(tiles):
    """fc1 writing bfloat16 (BF16_OUT) and fc2 reading it give the same bits as float32 in between, which fc2 rounds
    to bfloat16 itself."""
    linear = Bf16Linear(_library(), threads=2, tiles=tiles)
    rng = np.random.default_rng(4)
    m, k, hidden = 45, 64, 256
    x = rng.standard_normal((m, k)).astype(np.float32)
    w1, w2 = pack_weight(rng.standard_normal((k, hidden)).astype(np.float32)), pack_weight(rng.standard_normal((hidden, k)).astype(np.float32))
    floats, halves = np.empty((m, hidden), np.float32), bf16_rows(m, hidden)
    linear(x, w1, hidden, [floats], flags=GELU)
    linear(x, w1, hidden, [halves], flags=GELU | BF16_OUT)
    assert np.array_equal(_bf16(floats).astype(np.float32), (halves[:m].astype(np.uint32) << 16).view(np.float32))
    a, b = np.ones((m, k), np.float32), np.ones((m, k), np.float32)
    linear(floats, w2, k, [a], flags=ACCUMULATE)
    linear(halves, w2, k, [b], flags=ACCUMULATE, rows=m)
    assert np.array_equal(a, b)


def test_int8_tiny_en_encoder_is_float32_to_bfloat16_rounding_on_real_speech(tiny_en, tiny_en_default, monkeypatch):
    """On jfk the default model's encoder (bfloat16 products) gives cross K/V within 1.5 % of the float32 export's
    (measured ~0.5 % K, ~0.7 % V), a tenth of the int8 stages' error (~5 % K, ~7 % V), for a whole window and for a
    stream's first frames; ``TINGXIE_ENCODER=int8`` keeps the int8 stages."""
    _library()
    from tingxie.audio import decode_audio
    from tingxie.ort.runtime import OrtWhisper

    reference, default = tiny_en.engine, tiny_en_default.engine
    assert isinstance(default.encoder, Bf16Encoder)
    mel = np.zeros((1, 80, 3000), np.float32)
    log_mel = reference.log_mel(decode_audio(str(audio_path("jfk"))))
    mel[0, :, : log_mel.shape[-1]] = log_mel[:, :3000]

    def errors(features, exact) -> list[float]:
        ours, theirs = features.cross_k + features.cross_vt, exact.cross_k + exact.cross_vt
        assert [a.shape for a in ours] == [b.shape for b in theirs]
        return [float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(ours, theirs)]

    exact = reference.embed_audio(mel)
    bf16 = errors(default.embed_audio(mel), exact)
    assert max(bf16) < 0.015, bf16
    assert max(errors(default.encode_frames(mel, 400), reference.encode_frames(mel, 400))) < 0.015
    monkeypatch.setenv("TINGXIE_ENCODER", "int8")
    stages = OrtWhisper(default._encoder_args[0])
    assert isinstance(stages.encoder, StagedEncoder)
    int8 = errors(stages.embed_audio(mel), exact)
    assert min(int8) > 3 * max(bf16), (int8, bf16)


def test_weights_are_made_from_the_folders_checkpoint_once(tiny_en_default, tmp_path):
    """A folder without the kernel's weights (made before them) gets them from the checkpoint its meta.json names,
    written beside the graphs for the next load; a folder whose source is unknown gets none (the int8 stages run)."""
    folder = tiny_en_default.engine._encoder_args[0]
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    made = folder_weights(tmp_path)
    assert made is not None and (tmp_path / WEIGHTS_FILE).is_file()
    again = folder_weights(tmp_path)
    assert again.keys() == made.keys() and all(np.array_equal(again[key], made[key]) for key in made)
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "source": None}), encoding="utf-8")
    (tmp_path / WEIGHTS_FILE).unlink()
    assert folder_weights(tmp_path) is None


def test_two_threads_encoding_at_once_get_their_own_results(tiny_en_default):
    """A server's streams may encode on one model at once: each thread's products use their own scratch."""
    _library()
    from concurrent.futures import ThreadPoolExecutor

    engine = tiny_en_default.engine
    rng = np.random.default_rng(5)
    mels = [rng.standard_normal((1, 80, 3000)).astype(np.float32) for _ in range(2)]
    alone = [engine.encode_frames(mel, 300) for mel in mels]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda mel: engine.encode_frames(mel, 300), mels * 3))
    for i, features in enumerate(together):
        for a, b in zip(features.cross_k + features.cross_vt, alone[i % 2].cross_k + alone[i % 2].cross_vt):
            assert np.array_equal(a, b)
