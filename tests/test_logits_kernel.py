"""The decoder's int8 logits kernel (tingxie/ort/csrc/logits_int8.c) against MatMulNBits' arithmetic written in NumPy,
a random int8 model's decoder with it against the same model's ``logits.onnx``, and real tiny.en decoding with it
against decoding without it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import audio_path, require_shared

from tingxie.ort.logits import KERNEL_WEIGHTS, REQUIRED_FLAGS, Int8Logits, OrtLogits, pack_weights
from tingxie.ort.native import cpu_has, load_kernel
from tingxie.ort.quantize_plan import block_quantize
from tingxie.ort.runtime import OrtWhisper


def _kernel_library():
    """The compiled kernel; skipped only on a CPU without AVX512-VNNI. Where the CPU has it, the kernel must have been
    built by the install (setup.py): its absence fails instead of skipping."""
    if not cpu_has(REQUIRED_FLAGS):
        pytest.skip("this CPU lacks AVX512-VNNI: tingxie runs the logits as ONNX Runtime's graph here")
    library = load_kernel("tingxie.ort._logits_int8", REQUIRED_FLAGS)
    assert library is not None, "the CPU has AVX512-VNNI but tingxie/ort/_logits_int8*.so was not built (pip install -e . builds it)"
    return library


def _blockwise_reference(x: np.ndarray, quantized: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """MatMulNBits at accuracy level 4 in float64: each row's blocks of 32 as int8 (max |x| to 127, ties to even),
    integer sums against the weight's blocks (zero point 128), scaled by both scales."""
    rows, k = x.shape
    blocks = x.reshape(rows, k // 32, 32).astype(np.float32)
    amax = np.abs(blocks).max(-1)
    inverse = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    xq = np.rint(blocks * inverse[..., None]).astype(np.int64)
    wq = quantized.astype(np.int64) - 128  # (n, blocks, 32)
    sums = np.einsum("rbi,nbi->rnb", xq, wq)
    return np.einsum("rnb,rb,nb->rn", sums.astype(np.float64), (amax / np.float32(127)).astype(np.float64), scales.astype(np.float64))


def _weights(rng, n: int, k: int):
    weight = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    weight[rng.integers(0, k, 3)] *= 20  # a few outlier input channels, as the decoder's hidden state has
    return block_quantize(weight)


# ------------------------------------------------------------------ tier 1: the kernel on synthetic data


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 " + " ".join(REQUIRED_FLAGS) + " avx2\n\n", encoding="ascii")
    assert cpu_has(REQUIRED_FLAGS, str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512bw avx512vl avx512dq fma avx2\n", encoding="ascii")
    assert not cpu_has(REQUIRED_FLAGS, str(info))  # AVX-512 without its VNNI instructions
    assert not cpu_has(REQUIRED_FLAGS, str(tmp_path / "absent"))


def test_packing_puts_16_outputs_by_4_inputs_side_by_side():
    quantized = np.arange(20 * 2 * 32, dtype=np.int64).reshape(20, 2, 32).astype(np.uint8)  # 20 outputs: one padded panel
    scales = np.arange(40, dtype=np.float32).reshape(20, 2)
    packed, packed_scales = pack_weights(quantized, scales)
    assert packed.shape == (2, 16, 16, 4) and packed_scales.shape == (2, 2, 16)
    flat = quantized.reshape(20, 64)
    assert (packed[1, 3, 2] == flat[16 + 2, 12:16]).all()  # panel 1, inputs 12..15, output 18
    assert (packed[1, :, 4:] == 128).all() and (packed_scales[1, :, 4:] == 0).all()  # the padding adds nothing
    assert packed_scales[0, 1, 5] == scales[5, 1]


@pytest.mark.parametrize("rows,n", [(1, 51864), (5, 51864), (8, 1000), (9, 37), (17, 16), (3, 1)])
def test_kernel_computes_matmulnbits_arithmetic(rows, n):
    """One row to several groups of 8, a vocabulary that is no multiple of 16, a zero row (all-zero blocks)."""
    rng = np.random.default_rng(rows * 1000 + n)
    quantized, scales = _weights(rng, n, 384)
    logits = Int8Logits(_kernel_library(), *pack_weights(quantized, scales), n_vocab=n, threads=2)
    x = (rng.standard_normal((rows, 384)) * 3).astype(np.float32)
    x[-1, :64] = 0
    ours = logits(x[None])[0]
    assert ours.shape == (rows, n) and ours.dtype == np.float32
    expected = _blockwise_reference(x, quantized, scales)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_kernel_gives_the_same_result_on_any_number_of_threads():
    rng = np.random.default_rng(7)
    quantized, scales = _weights(rng, 5000, 256)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    packed = pack_weights(quantized, scales)
    results = [Int8Logits(_kernel_library(), *packed, n_vocab=5000, threads=threads)(x) for threads in (1, 2, 3, 7)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_kernel_refuses_hidden_states_of_another_width():
    rng = np.random.default_rng(8)
    logits = Int8Logits(_kernel_library(), *pack_weights(*_weights(rng, 50, 128)), n_vocab=50, threads=1)
    with pytest.raises(ValueError, match="128"):
        logits(np.zeros((2, 64), np.float32))
    assert logits(np.zeros((0, 1, 128), np.float32)).shape == (0, 1, 50)  # no rows: nothing to compute


# ------------------------------------------------------------------ tier 2: a random int8 model, kernel and graph

def test_int8_decoder_runs_the_kernel_and_agrees_with_its_logits_graph(random_exports, monkeypatch):
    """A random model exported int8 writes the kernel's weights; its decoder steps with the kernel give the logits
    the exported ``logits.onnx`` gives (TINGXIE_LOGITS=onnxruntime), to float32 summation order; a float32 export
    never uses the kernel."""
    _kernel_library()
    folder, f32_folder, dims = random_exports
    assert (folder / KERNEL_WEIGHTS).is_file()
    mel = np.random.default_rng(3).standard_normal((1, 80, 2 * dims.n_audio_ctx)).astype(np.float32)
    fast = OrtWhisper(folder, threads=2)
    assert isinstance(fast.logits, Int8Logits)
    monkeypatch.setenv("TINGXIE_LOGITS", "onnxruntime")
    graph = OrtWhisper(folder, threads=2)
    assert isinstance(graph.logits, OrtLogits)
    steps = [np.array([[50257, 50362]] * 3), np.array([[11], [12], [13]]), np.array([[14], [15], [16]])]
    results = []
    for engine in (fast, graph):
        cache = engine.new_cache(engine.embed_audio(mel), repeat=3)
        results.append([engine.decode(tokens, cache) for tokens in steps])
    for ours, theirs in zip(*results):
        assert ours.shape == theirs.shape == (3, ours.shape[1], dims.n_vocab)
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
    monkeypatch.delenv("TINGXIE_LOGITS")
    assert not (f32_folder / KERNEL_WEIGHTS).exists()
    assert isinstance(OrtWhisper(f32_folder, threads=1).logits, OrtLogits)


# ------------------------------------------------------------------ tier 3: real tiny.en weights, shared speech


def test_tiny_en_int8_decodes_the_same_words_with_and_without_the_kernel(monkeypatch):
    """The CLI's default model (tiny.en int8, beam 5) on real speech: the kernel's logits and the graph's differ only
    in float32 summation order, so every word of a long recording is the same."""
    _kernel_library()
    require_shared()
    from tingxie import load_model

    fast = load_model("tiny.en", backend="onnx", compute_type="int8")
    assert isinstance(fast.module.logits, Int8Logits)
    monkeypatch.setenv("TINGXIE_LOGITS", "onnxruntime")
    graph = load_model("tiny.en", backend="onnx", compute_type="int8")
    assert isinstance(graph.module.logits, OrtLogits)
    audio = str(audio_path("real_concat"))
    ours, theirs = fast.transcribe(audio, beam_size=5), graph.transcribe(audio, beam_size=5)
    assert ours.text == theirs.text
    assert "ask not what your country can do for you" in ours.text.lower()  # "Americans. Ask not" with the bfloat16 encoder


def test_the_kernel_is_loaded_exactly_where_the_cpu_can_run_it():
    """Where the CPU has AVX512-VNNI (CI's machines do) the install must have built the kernel, so it is in use and
    not silently replaced by the graph; elsewhere it is never loaded, since its instructions would fault."""
    library = load_kernel("tingxie.ort._logits_int8", REQUIRED_FLAGS)
    if cpu_has(REQUIRED_FLAGS):
        assert library is not None, "tingxie/ort/_logits_int8*.so was not built (pip install -e . builds it)"
    else:
        assert library is None
