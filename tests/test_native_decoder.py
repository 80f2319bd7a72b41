"""The compiled int8 decoder step (tingxie/ort/csrc/decoder_step.c): its key layout, its steps against the int8
arithmetic written in NumPy on the real tiny.en weights and a real window (beams of two audios, a shared prompt,
several steps), and users' default transcription running it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import audio_path, require_shared

from tingxie.ort.native import cpu_has, load_kernel
from tingxie.ort.native_decoder import REQUIRED_FLAGS, load_native_decoder
from tingxie.ort.quantize_plan import block_quantize


def _require_kernel() -> None:
    """Skipped only on a CPU without AVX512-VNNI; where the CPU has it, the kernel must have been built."""
    if not cpu_has(REQUIRED_FLAGS):
        pytest.skip("this CPU lacks AVX512-VNNI: tingxie runs every decoder step as ONNX Runtime's graph here")
    assert load_kernel("tingxie.ort._decoder_step", REQUIRED_FLAGS) is not None, \
        "the CPU has AVX512-VNNI but tingxie/ort/_decoder_step*.so was not built (pip install -e . builds it)"


# ------------------------------------------------------------------ tier 1: the layout


def test_kernel_weights_files_map_back_and_a_rewrite_leaves_a_mapped_one_whole(tmp_path):
    from tingxie.ort.native import load_arrays, save_arrays

    path = tmp_path / "w.bin"
    first = {"a": np.arange(70, dtype=np.int8).reshape(7, 10), "b": np.float32(2.5), "c": np.linspace(0, 1, 33).astype(np.float32)}
    save_arrays(path, first)
    loaded = load_arrays(path)
    for name, value in first.items():
        assert loaded[name].dtype == np.asarray(value).dtype and np.array_equal(loaded[name], value)
        assert loaded[name].ctypes.data % 64 == 0  # each array on its own cache line (the kernels' loads)
    loaded["c"][0] = 9.0  # a write stays in this mapping (copy-on-write): the file is unchanged
    assert load_arrays(path)["c"][0] == 0.0
    save_arrays(path, {"a": np.zeros((2, 2), np.int8)})  # written beside and renamed over the mapped file
    assert np.array_equal(loaded["a"], first["a"]) and np.array_equal(load_arrays(path)["a"], np.zeros((2, 2), np.int8))
    assert list(tmp_path.iterdir()) == [path]  # no partial file left


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> the nearest bfloat16 (ties to even), as float32."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32)


def test_cross_keys_in_bfloat16_blocks_of_16_frames_with_zeros_after_the_last_and_values_frames_first(tiny_en_default):
    _require_kernel()
    rng = np.random.default_rng(3)
    keys = rng.standard_normal((2, 3, 20, 64)).astype(np.float32)
    values = rng.standard_normal((2, 3, 64, 20)).astype(np.float32)
    keys[0, 0, 0, :3] = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8)]  # halfway cases: to even
    (blocked,), (packed,) = tiny_en_default.engine.native_step.cross_bf16([keys], [values])
    assert blocked.shape == (2, 3, 2, 64, 16) and blocked.dtype == np.uint16 and blocked.flags.c_contiguous
    as_float = (blocked.astype(np.uint32) << 16).view(np.float32)
    rounded = _bf16(keys)
    for frame in (0, 5, 15, 16, 19):
        np.testing.assert_array_equal(as_float[1, 2, frame // 16, :, frame % 16], rounded[1, 2, frame])
    np.testing.assert_array_equal(as_float[0, 0, 0, :3, 0], [1, 1 + 4 * 2**-8, -1])
    assert not blocked[:, :, 1, :, 4:].any()  # frames 20..31 do not exist
    assert packed.shape == (2, 3, 20, 64) and packed.dtype == np.uint16 and packed.flags.c_contiguous  # frames first
    np.testing.assert_array_equal((packed.astype(np.uint32) << 16).view(np.float32), _bf16(values).transpose(0, 1, 3, 2))


def test_the_switch_turns_it_off(tiny_en_default, monkeypatch):
    monkeypatch.setenv("TINGXIE_DECODER", "onnxruntime")
    folder = tiny_en_default.engine.folder
    assert load_native_decoder(folder, "int8", 4, 6) is None
    monkeypatch.delenv("TINGXIE_DECODER")
    assert load_native_decoder(folder, "default", 4, 6) is None  # float32 models keep the graph (the reference's numbers)


# ------------------------------------------------------------------ tier 3: real weights, real audio


def _layer_norm(x, gain, bias):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-5) * gain + bias


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class _Int8Reference:
    """One decoder step in float64 NumPy with the int8 graph's arithmetic for every product (MatMulNBits at accuracy
    level 4: 8-bit weight blocks of 32, each row's activations quantized per block of 32, ties to even)."""

    def __init__(self, state):
        self.state = state

    def linear(self, x, name, scale=1.0):
        weight = self.state[f"{name}.weight"] * np.float32(scale)
        quantized, scales = block_quantize(np.ascontiguousarray(weight.T, dtype=np.float32))
        blocks = x.astype(np.float32).reshape(len(x), -1, 32)
        amax = np.abs(blocks).max(-1)
        inverse = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
        xq = np.rint(blocks * inverse[..., None]).astype(np.int64)
        sums = np.einsum("rbi,nbi->rnb", xq, quantized.astype(np.int64) - 128).astype(np.float64)
        y = np.einsum("rnb,rb,nb->rn", sums, (amax / np.float32(127)).astype(np.float64), scales.astype(np.float64))
        bias = self.state.get(f"{name}.bias")
        return y if bias is None else y + bias * scale

    def step(self, tokens, position, history, prefix_k, prefix_v, cross_k, cross_vt, group):
        """history[row][layer]: the row's earlier (keys, values) (head, n, 64); appended to."""
        s = self.state
        x = s["decoder.token_embedding.weight"][tokens].astype(np.float64) + s["decoder.positional_embedding"][position]
        heads = prefix_k[0].shape[1]
        for layer in range(len(prefix_k)):
            b = f"decoder.blocks.{layer}"
            h = _layer_norm(x, s[f"{b}.attn_ln.weight"], s[f"{b}.attn_ln.bias"])
            q, k, v = self.linear(h, f"{b}.attn.query", 0.125), self.linear(h, f"{b}.attn.key"), self.linear(h, f"{b}.attn.value")
            out = np.zeros_like(x)
            for r in range(len(x)):
                own_k, own_v = history[r][layer]
                own_k = np.concatenate([own_k, k[r].reshape(heads, 1, 64)], axis=1)
                own_v = np.concatenate([own_v, v[r].reshape(heads, 1, 64)], axis=1)
                history[r][layer] = (own_k, own_v)
                for head in range(heads):
                    keys = np.concatenate([prefix_k[layer][r // group, head], own_k[head]])
                    values = np.concatenate([prefix_v[layer][r // group, head], own_v[head]])
                    out[r, head * 64 : head * 64 + 64] = _softmax(keys @ q[r, head * 64 : head * 64 + 64]) @ values
            x = x + self.linear(out, f"{b}.attn.out")
            q = self.linear(_layer_norm(x, s[f"{b}.cross_attn_ln.weight"], s[f"{b}.cross_attn_ln.bias"]), f"{b}.cross_attn.query", 0.125)
            out = np.zeros_like(x)
            for r in range(len(x)):
                for head in range(heads):
                    weights = _softmax(cross_k[layer][r // group, head] @ q[r, head * 64 : head * 64 + 64])
                    out[r, head * 64 : head * 64 + 64] = cross_vt[layer][r // group, head] @ weights
            x = x + self.linear(out, f"{b}.cross_attn.out")
            h = self.linear(_layer_norm(x, s[f"{b}.mlp_ln.weight"], s[f"{b}.mlp_ln.bias"]), f"{b}.mlp.0")
            x = x + self.linear(0.5 * h * (1 + np.vectorize(math.erf)(h / math.sqrt(2))), f"{b}.mlp.2")
        return _layer_norm(x, s["decoder.ln.weight"], s["decoder.ln.bias"])


@pytest.mark.parametrize("layers", [1, 4])
def test_steps_of_beams_over_two_windows_follow_the_int8_arithmetic(tiny_en_default, layers):
    """Two real windows, 3 beams each, the same prompt, 4 steps, through the first ``layers`` layers (and the final
    LayerNorm): every row's hidden state as the NumPy int8 reference gives it (the products' sums are exact integers;
    float32 against float64 elsewhere)."""
    require_shared()
    _require_kernel()
    from tingxie.audio import decode_audio
    from tingxie.ort.native import load_arrays
    from tingxie.ort.native_decoder import STEP_WEIGHTS, NativeDecoderStep
    from tingxie.weights.arrays import load_array_checkpoint

    engine = tiny_en_default.engine
    assert engine.native_step is not None  # what users' default transcription runs here
    library = load_kernel("tingxie.ort._decoder_step", REQUIRED_FLAGS)
    step = NativeDecoderStep(library, load_arrays(engine.folder / STEP_WEIGHTS), engine.native_step._tokens, layers, 6, 2)
    audio = decode_audio(str(audio_path("jfk")))
    mel = np.concatenate([engine.log_mel(audio[:480000], padding=480000)[None, :, :3000],
                          engine.log_mel(audio[16000:496000], padding=480000)[None, :, :3000]])
    features = engine.encode(mel)
    cache = engine.new_cache(features, 3)
    engine.decode(np.array([[50257, 50362]] * 6), cache)  # the prompt, stored once per audio
    reference = _Int8Reference(load_array_checkpoint("tiny.en").state)
    history = [[(np.zeros((6, 0, 64)), np.zeros((6, 0, 64))) for _ in range(layers)] for _ in range(6)]
    tokens = np.array([440, 383, 1114, 1002, 290, 50363])
    errors = []
    for position in (2, 3, 4, 5):
        cache.make_room(position - 1, 448)
        hidden = step.step(tokens[:, None], position, cache.self_k, cache.self_v, position - 2, cache.prefix_k, cache.prefix_v,
                           cache.cross_kt, cache.cross_vb, 3)[:, 0]
        cache.length = position + 1
        expected = reference.step(tokens, position, history, cache.prefix_k[:layers], cache.prefix_v[:layers],
                                  [_bf16(k) for k in features.cross_k], [_bf16(v) for v in features.cross_vt], 3)
        errors.extend(np.sqrt(((hidden - expected) ** 2).mean(-1) / (expected ** 2).mean(-1)))
        for layer in range(layers):  # the new keys and values went into the cache where the next step reads them
            for written, kept in ((cache.self_k[layer], 0), (cache.self_v[layer], 1)):
                expected_kv = np.stack([h[layer][kept][:, -1] for h in history])
                np.testing.assert_allclose(written[:, :, position - 2], expected_kv, atol=3e-2 * np.abs(expected_kv).max())
        tokens = (tokens * 7 + 11) % 50257
    # rows agree to float32 rounding, except where float32 against float64 (or the kernel's erf, within 1.5e-7)
    # rounds one activation to the other side of an int8 step: ~2e-3 after one layer, up to ~1 % after four (ONNX
    # Runtime's graph differs from both as much). A wrong index or layout would be off by tens of percent.
    if layers == 1:
        assert np.median(errors) < 1e-5 and max(errors) < 5e-3, errors
    assert max(errors) < 5e-2, errors


def test_default_transcription_runs_the_compiled_step_and_hears_the_words(tiny_en_default, monkeypatch):
    require_shared()
    _require_kernel()
    calls = []
    step = tiny_en_default.engine.native_step.step
    monkeypatch.setattr(tiny_en_default.engine.native_step, "step", lambda *a, **k: calls.append(1) or step(*a, **k))
    text = tiny_en_default.transcribe(str(audio_path("jfk"))).text
    assert "ask not what your country can do for you" in text.lower()
    assert len(calls) > 10


@pytest.mark.parametrize("beams", [5, 6])
def test_a_step_s_logits_in_the_same_call_equal_the_logits_kernel_s(tiny_en_default, beams):
    """A plain step gives its logits from the same compiled call (the final LayerNorm and the vocabulary's product on
    its threads): bit for bit what the logits kernel gives for the step's hidden states, with few rows (each thread
    quantizes every row) and with more (2 windows x 6 beams: shared)."""
    require_shared()
    _require_kernel()
    from tingxie.audio import decode_audio

    engine = tiny_en_default.engine
    assert type(engine.logits).__name__ == "Int8Logits"  # the default engine's logits here: what the call fuses
    audio = decode_audio(str(audio_path("jfk")))
    mel = np.concatenate([engine.log_mel(audio[:480000], padding=480000)[None, :, :3000],
                          engine.log_mel(audio[16000:496000], padding=480000)[None, :, :3000]])
    windows = 1 if beams == 5 else 2
    cache = engine.new_cache(engine.encode(mel[:windows]), beams)
    engine.decode(np.array([[50257, 50362]] * (windows * beams)), cache)
    tokens = np.arange(windows * beams)[:, None] * 37 + 440
    for position in (2, 3):
        cache.make_room(position - 1, 448)
        args = (tokens, position, cache.self_k, cache.self_v, position - 2, cache.prefix_k, cache.prefix_v, cache.cross_kt, cache.cross_vb, beams)
        hidden = engine.native_step.step(*args)
        logits = engine.native_step.step(*args, vocabulary=engine.logits)
        assert logits.shape == (windows * beams, 1, engine.logits.n_vocab) and logits.dtype == np.float32
        np.testing.assert_array_equal(logits, engine.logits(hidden))
        tokens = tokens + 1


def test_a_batch_s_open_windows_step_in_place_as_in_the_whole_batch(tiny_en_default, monkeypatch):
    """Once some windows of a batch have ended, the rest step through the compiled call at their own cache rows
    (cache_rows): each open row's logits and new keys bit for bit those of the whole batch's step, the ended rows'
    logits zeros and their cache untouched; no graph is made for it."""
    require_shared()
    _require_kernel()
    from tingxie.audio import decode_audio

    engine = tiny_en_default.engine
    monkeypatch.setattr(engine, "_decoder_session", lambda: pytest.fail("a row subset made the decoder graph"))
    audio = decode_audio(str(audio_path("jfk")))
    mel = np.concatenate([engine.log_mel(audio[:480000], padding=480000)[None, :, :3000],
                          engine.log_mel(audio[16000:496000], padding=480000)[None, :, :3000],
                          engine.log_mel(audio[32000:512000], padding=480000)[None, :, :3000]])
    features = engine.encode(mel)
    caches = [engine.new_cache(features, 3) for _ in range(2)]
    tokens = np.arange(9)[:, None] * 37 + 440
    for cache in caches:
        engine.decode(np.array([[50257, 50362]] * 9), cache)
        engine.decode(tokens, cache)
    whole = engine.decode(tokens + 1, caches[0])
    before = [k.copy() for k in caches[1].self_k]
    part = engine.decode(tokens + 1, caches[1], rows=[0, 1, 2, 6, 7, 8])  # window 1 has ended
    open_rows, ended = [0, 1, 2, 6, 7, 8], [3, 4, 5]
    np.testing.assert_array_equal(part[open_rows], whole[open_rows])
    assert not part[ended].any()
    for layer, (k_whole, k_part, k_before) in enumerate(zip(caches[0].self_k, caches[1].self_k, before)):
        np.testing.assert_array_equal(k_part[open_rows, :, :2], k_whole[open_rows, :, :2])
        np.testing.assert_array_equal(k_part[ended, :, :2], k_before[ended, :, :2])


def test_a_prompt_in_one_call_equals_its_tokens_one_at_a_time(tiny_en_default):
    """The window's prompt runs as one call of all its tokens (each attends to those before it); the same tokens one
    call each give the same states and keys: the same arithmetic row by row."""
    require_shared()
    _require_kernel()
    from tingxie.audio import decode_audio

    engine = tiny_en_default.engine
    audio = decode_audio(str(audio_path("jfk")))
    features = engine.encode(engine.log_mel(audio[:480000], padding=480000)[None, :, :3000])
    cache = engine.new_cache(features, 1)
    prompt = np.array([[50361, 440, 383, 1114, 50257, 50362]])
    shape = (1, 6, prompt.shape[1], 64)
    none = [np.zeros((1, 6, 0, 64), np.float32)] * 4
    whole_k, whole_v = [np.zeros(shape, np.float32) for _ in range(4)], [np.zeros(shape, np.float32) for _ in range(4)]
    whole = engine.native_step.step(prompt, 0, whole_k, whole_v, 0, none, none, cache.cross_kt, cache.cross_vb, 1)
    one_k, one_v = [np.zeros(shape, np.float32) for _ in range(4)], [np.zeros(shape, np.float32) for _ in range(4)]
    for j in range(prompt.shape[1]):
        single = engine.native_step.step(prompt[:, j : j + 1], j, one_k, one_v, j, none, none, cache.cross_kt, cache.cross_vb, 1)
        np.testing.assert_allclose(single[:, 0], whole[:, j], rtol=0, atol=1e-4 * np.abs(whole).max())
    for a, b in zip(whole_k + whole_v, one_k + one_v):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(a).max())


def test_word_timing_alignment_through_the_compiled_step_matches_the_graph(tiny_en_default):
    """Word timing's teacher-forced pass (next-token log-probabilities and the alignment heads' cross-attention scores)
    runs in one compiled call; the decoder graph, made on first use, gives the same within int8's rounding."""
    require_shared()
    _require_kernel()
    from tingxie.audio import decode_audio
    from tingxie.ort.runtime import OrtWhisper

    engine = tiny_en_default.engine
    audio = decode_audio(str(audio_path("jfk")))
    features = engine.encode(engine.log_mel(audio[:480000], padding=480000)[None, :, :3000])
    tokens = np.array([[50257, 50362, 400, 370, 616, 7297, 3399, 1265, 407, 644, 534, 1499, 460, 466, 329, 345, 11, 50256]])
    heads = [(3, 1), (1, 0), (2, 5)]  # not in layer order: the scores come back in this order
    logprobs, scores = engine.alignment_scores(tokens, features, heads, 50257)
    graph = OrtWhisper(engine.folder)
    graph.native_step = None
    expected_logprobs, expected_scores = graph.alignment_scores(tokens, features, heads, 50257)
    assert scores.shape == expected_scores.shape == (3, 18, 1500)
    assert np.corrcoef(scores.ravel(), expected_scores.ravel())[0, 1] > 0.9999
    finite = np.isfinite(expected_logprobs)
    np.testing.assert_array_equal(np.isfinite(logprobs), finite)
    # within int8's rounding: 0.1, or 2 % of a very unlikely token's log-probability (-14.3 against -14.5)
    np.testing.assert_allclose(logprobs[finite], expected_logprobs[finite], atol=0.1, rtol=0.02)
    assert np.array_equal(scores.argmax(-1), expected_scores.argmax(-1)) or (scores.argmax(-1) != expected_scores.argmax(-1)).mean() < 0.05


def test_a_busy_machine_gets_one_thread_per_step_and_the_same_text(tiny_en_default, monkeypatch):
    """Where another process holds a core, a window's steps run on one thread (waiting at the step's barriers for a
    thread without a core cost ~2.7x); the arithmetic does not depend on the thread count."""
    require_shared()
    _require_kernel()
    import tingxie.ort.runtime as runtime

    engine = tiny_en_default.engine
    features = engine.encode(np.zeros((1, 80, 3000), np.float32))
    monkeypatch.setattr(runtime, "machine_is_idle", lambda reads=3: True)
    assert engine.new_cache(features).step_threads is None
    idle = tiny_en_default.transcribe(str(audio_path("jfk")), beam_size=5)
    monkeypatch.setattr(runtime, "machine_is_idle", lambda reads=3: False)
    assert engine.new_cache(features).step_threads == 1
    busy = tiny_en_default.transcribe(str(audio_path("jfk")), beam_size=5)
    assert busy.text == idle.text and [s.avg_logprob for s in busy.segments] == [s.avg_logprob for s in idle.segments]
