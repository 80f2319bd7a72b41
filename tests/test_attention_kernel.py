"""The encoder's bfloat16 attention kernel (tingxie/ort/csrc/attention_bf16.c) against float64 attention, and the
int8 model's encoder with it against the same encoder with ONNX Runtime's float32 attention, on real speech."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import audio_path, require_shared

from tingxie.ort.attention import REQUIRED_FLAGS, TILE_FLAGS, Bf16Attention, OrtAttention, bf16_library, cpu_has_bf16, tiles_ready
from tingxie.ort.native import cpu_has
from tingxie.ort.runtime import OrtWhisper


def _kernel_library():
    """The compiled kernel; skipped only on a CPU without AVX512-BF16. Where the CPU has it, the kernel must have been
    built by the install (setup.py): its absence fails instead of skipping."""
    if not cpu_has_bf16():
        pytest.skip("this CPU lacks AVX512-BF16: tingxie uses ONNX Runtime's float32 attention here")
    library = bf16_library()
    assert library is not None, "the CPU has AVX512-BF16 but tingxie/ort/_attention_bf16*.so was not built (pip install -e . builds it)"
    return library


def _paths(library) -> list[bool]:
    """The kernel's product paths this machine runs: AVX512-BF16 vectors, and AMX tiles where the CPU has them (then
    Linux must grant them: a refusal fails rather than skips)."""
    if not cpu_has(TILE_FLAGS):
        return [False]
    assert tiles_ready(library), "the CPU has AMX tiles but the kernel could not get them from Linux"
    return [False, True]


def _attention_f64(q: np.ndarray, k: np.ndarray, v: np.ndarray, n_head: int) -> np.ndarray:
    b, t, state = q.shape

    def heads(x):
        return x.astype(np.float64).reshape(b, t, n_head, state // n_head).transpose(0, 2, 1, 3)

    scores = heads(q) @ heads(k).transpose(0, 1, 3, 2) / np.sqrt(state // n_head)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return (weights @ heads(v)).transpose(0, 2, 1, 3).reshape(b, t, state)


def _qkv(rng, batch: int, time: int, n_head: int) -> tuple[np.ndarray, ...]:
    # scores of a few units, up to ~20-30 (tiny.en's encoder: up to 18-49 on real_concat): peaked and flat rows alike
    return tuple((rng.standard_normal((batch, time, n_head * 64)) * scale).astype(np.float32) for scale in (1.5, 1.5, 1.0))


# ------------------------------------------------------------------ tier 1: the kernel on synthetic data


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 " + " ".join(REQUIRED_FLAGS) + " avx2\n\n", encoding="ascii")
    assert cpu_has_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512bw avx512vl avx512dq fma avx2\n", encoding="ascii")
    assert not cpu_has_bf16(str(info))  # AVX-512 without its bfloat16 instructions
    assert not cpu_has_bf16(str(tmp_path / "absent"))


@pytest.mark.parametrize("batch,time,n_head", [(1, 1500, 6), (2, 37, 2), (1, 1, 1), (3, 64, 8), (1, 129, 3)])
def test_bf16_kernel_matches_float64_attention(batch, time, n_head):
    """Whole key blocks and a ragged last one (keys past the end weigh nothing), one key, several audios."""
    library = _kernel_library()
    q, k, v = _qkv(np.random.default_rng(time), batch, time, n_head)
    exact = _attention_f64(q, k, v, n_head)
    for tiles in _paths(library):
        ours = Bf16Attention(library, n_head, threads=2, tiles=tiles)(q, k, v)
        assert ours.shape == q.shape and ours.dtype == np.float32
        # bfloat16 inputs (8 bits of mantissa), float32 softmax and sums: ~0.3 % of the output's size; float32 is ~1e-7
        assert np.linalg.norm(ours - exact) / np.linalg.norm(exact) < 6e-3, tiles
        assert np.abs(ours - exact).max() < 0.05 * np.abs(v).max(), tiles


def test_bf16_kernel_gives_the_same_result_on_any_number_of_threads():
    q, k, v = _qkv(np.random.default_rng(1), 2, 300, 6)
    library = _kernel_library()
    for tiles in _paths(library):
        results = [Bf16Attention(library, 6, threads, tiles)(q, k, v) for threads in (1, 2, 3, 7)]
        for other in results[1:]:
            np.testing.assert_array_equal(results[0], other)


def test_bf16_kernel_refuses_inputs_of_another_shape():
    attention = Bf16Attention(_kernel_library(), 6, threads=1)
    q, k, v = _qkv(np.random.default_rng(2), 1, 10, 6)
    with pytest.raises(ValueError, match="384"):
        attention(q[..., :128], k[..., :128], v[..., :128])
    with pytest.raises(ValueError):
        attention(q, k[:, :5], v)
    assert attention(q[:0], k[:0], v[:0]).shape == (0, 10, 384)  # no audio: nothing to compute


# ------------------------------------------------------------------ tier 2: a random int8 model, both attentions

def test_int8_encoder_runs_the_kernel_and_agrees_with_float32_attention(random_exports, monkeypatch):
    """A random model with 64-wide heads, exported int8: its encoder stages with the kernel between them give the
    features the same stages give with ONNX Runtime's float32 attention (TINGXIE_ATTENTION=float32), to bfloat16
    rounding; a float32 export never uses the kernel."""
    _kernel_library()
    folder, f32_folder, dims = random_exports
    mel = np.random.default_rng(3).standard_normal((2, 80, 2 * dims.n_audio_ctx)).astype(np.float32)
    fast = OrtWhisper(folder, threads=2)
    assert isinstance(fast.encoder.attention, Bf16Attention)
    monkeypatch.setenv("TINGXIE_ATTENTION", "float32")
    exact = OrtWhisper(folder, threads=2)
    assert isinstance(exact.encoder.attention, OrtAttention)
    a, b = fast.embed_audio(mel), exact.embed_audio(mel)
    for x, y in zip(a.cross_k + a.cross_vt, b.cross_k + b.cross_vt):
        assert x.shape == y.shape
        # int8 activations are quantized per call, so a rounding step of the attention can move a few of them
        assert np.linalg.norm(x - y) / np.linalg.norm(y) < 0.05
    monkeypatch.delenv("TINGXIE_ATTENTION")
    assert isinstance(OrtWhisper(f32_folder, threads=1).encoder.attention, OrtAttention)


# ------------------------------------------------------------------ tier 3: real tiny.en weights, shared speech


def test_tiny_en_int8_with_the_kernel_is_as_close_to_float32_as_int8_alone(monkeypatch):
    """On real speech, the int8 encoder's output with bfloat16 attention is no further from the float32 model's than
    the int8 encoder's with float32 attention (measured on real_concat: 6.5-7.7 % against 8.2-9.1 % relative; int8
    activations dominate), and jfk's words are the same."""
    _kernel_library()
    require_shared()
    from tingxie import load_model
    from tingxie.audio import decode_audio
    from tingxie.mel import log_mel_spectrogram_numpy
    from tingxie.normalizers.english import english_normalize

    mel = log_mel_spectrogram_numpy(decode_audio(audio_path("real_concat")), 80, padding=480000)[None, :, :3000]
    reference = load_model("tiny.en", backend="onnx", compute_type="default").module.embed_audio(mel)
    fast = load_model("tiny.en", backend="onnx", compute_type="int8")
    assert isinstance(fast.module.encoder.attention, Bf16Attention)
    assert fast.module.encoder.attention.tiles == cpu_has(TILE_FLAGS)  # the default takes the tiles where the CPU has them
    monkeypatch.setenv("TINGXIE_ATTENTION", "float32")
    exact = load_model("tiny.en", backend="onnx", compute_type="int8")
    assert isinstance(exact.module.encoder.attention, OrtAttention)

    def distance(features) -> float:
        ours, theirs = features.cross_k + features.cross_vt, reference.cross_k + reference.cross_vt
        return float(np.mean([np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(ours, theirs)]))

    with_kernel, without = distance(fast.module.embed_audio(mel)), distance(exact.module.embed_audio(mel))
    assert with_kernel < 0.15 and with_kernel <= without + 0.01, (with_kernel, without)
    jfk = str(audio_path("jfk"))
    # the same words (the kernel's run ends without the final period: tiny.en's int8 decisions are that close)
    assert english_normalize(fast.transcribe(jfk).text) == english_normalize(exact.transcribe(jfk).text)
    assert "ask not what your country can do for you" in fast.transcribe(jfk).text


def test_the_kernel_is_loaded_exactly_where_the_cpu_can_run_it():
    """Where the CPU has AVX512-BF16 (CI's machines do) the install must have built the kernel, so it is in use and
    not silently replaced by the fallback; elsewhere it is never loaded, since its instructions would fault."""
    if cpu_has_bf16():
        assert bf16_library() is not None, "tingxie/ort/_attention_bf16*.so was not built (pip install -e . builds it)"
    else:
        assert bf16_library() is None
