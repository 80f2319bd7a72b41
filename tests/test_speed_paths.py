"""The fast paths give the same recognition: int8 against float32, the converted-weights cache, batched mode.

No timings here (speed is measured by bench/speed.py); these tests check that what the fast paths
produce agrees with the reference-identical float32 sequential path on real speech and real weights.
"""

from __future__ import annotations

import re

import jiwer
import pytest
import torch
from conftest import audio_path, golden, manifest_rows, require_shared


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def _reference(row_id: str) -> str:
    return next(r["reference"] for r in manifest_rows() if r["id"] == row_id)


@pytest.fixture(scope="module")
def tiny_en_int8():
    from tingxie import load_model

    return load_model("tiny.en", device="cpu", compute_type="int8", backend="torch")  # the PyTorch engine's int8 layers


def test_int8_logits_agree_with_float32(tiny_en_torch, tiny_en_int8):
    from tingxie.audio import pad_or_trim
    from tingxie.mel import log_mel_spectrogram

    require_shared()
    mel = pad_or_trim(log_mel_spectrogram(str(audio_path("jfk"))), 3000)[None]
    tokens = torch.tensor([list(tiny_en_torch.tokenizer("en").sot_sequence) + golden("jfk.greedy")["segments"][0]["tokens"][:20]])
    with torch.inference_mode():
        f32 = tiny_en_torch.module.logits(tokens, tiny_en_torch.module.embed_audio(mel))
        i8 = tiny_en_int8.module.logits(tokens, tiny_en_int8.module.embed_audio(mel))
    assert ((i8 - f32).norm() / f32.norm()).item() < 0.15  # measured 0.074: int8 weights and activations in 8 layers
    # the model still predicts the same next token almost everywhere along the real transcript
    agree = (i8.argmax(-1) == f32.argmax(-1)).float().mean().item()
    assert agree >= 0.9, agree


@pytest.mark.parametrize("beam_size", [None, 5])
def test_int8_transcript_wer_matches_float32(tiny_en_torch, tiny_en_int8, beam_size):
    require_shared()
    rows = [r["id"] for r in manifest_rows() if r["language"] == "en" and r["reference_kind"] == "human" and float(r["duration_s"]) < 31]
    refs = [_words(_reference(r)) for r in rows]
    f32 = [_words(tiny_en_torch.transcribe(str(audio_path(r)), beam_size=beam_size).text) for r in rows]
    i8 = [_words(tiny_en_int8.transcribe(str(audio_path(r)), beam_size=beam_size).text) for r in rows]
    assert len(rows) >= 8
    # a few words in ~200: PyTorch's int8 layers (not the default engine) measured +2.9 points greedy on this 2-core VM
    # (9.6 -> 12.4 %, the same at this session's start), +0 with beam 5; bench/speed.py reports the WER
    assert jiwer.wer(refs, i8) <= jiwer.wer(refs, f32) + 0.04


def test_int8_is_rejected_off_cpu_and_off_float32():
    from tingxie.errors import OptionError
    from tingxie.quantize import resolve_compute_type

    assert resolve_compute_type("auto", torch.device("cpu")) == "int8"
    assert resolve_compute_type("auto", torch.device("cpu"), torch.bfloat16) == "default"
    assert resolve_compute_type(None, torch.device("cpu")) == "default"
    with pytest.raises(OptionError, match="CPU only"):
        resolve_compute_type("int8", torch.device("cuda"))
    with pytest.raises(OptionError, match="compute_type"):
        resolve_compute_type("int4", torch.device("cpu"))


def test_converted_copy_is_written_once_and_loads_the_same_weights(tmp_path):
    from tingxie.weights import load_checkpoint

    first = load_checkpoint("tiny.en", cache_dir=tmp_path, convert_to=torch.float32)
    files = list((tmp_path / "converted").glob("tiny.en-float32-*.safetensors"))
    assert len(files) == 1 and "converted" not in first.extra
    second = load_checkpoint("tiny.en", cache_dir=tmp_path, convert_to=torch.float32)
    assert second.extra["converted"] == str(files[0])
    assert second.dims == first.dims and second.alignment_heads == first.alignment_heads and second.format == first.format
    assert second.state_dict.keys() == first.state_dict.keys()
    for name, tensor in first.state_dict.items():
        assert torch.equal(second.state_dict[name], tensor), name


def test_a_broken_converted_copy_is_converted_again(tmp_path):
    from tingxie.weights import load_checkpoint

    load_checkpoint("tiny.en", cache_dir=tmp_path, convert_to=torch.float32)
    (file,) = (tmp_path / "converted").glob("*.safetensors")
    file.write_bytes(b"not safetensors")
    again = load_checkpoint("tiny.en", cache_dir=tmp_path, convert_to=torch.float32)
    assert "converted" not in again.extra and again.dims.n_vocab == 51864


def test_pack_regions_keeps_chunks_within_30_seconds():
    from tingxie.batched import Chunk, pack_regions

    sr = 16000
    regions = [(0, 5 * sr), (6 * sr, 20 * sr), (21 * sr, 29 * sr), (31 * sr, 40 * sr), (100 * sr, 170 * sr)]
    chunks = pack_regions(regions)
    assert chunks[:2] == [Chunk(0, 29 * sr), Chunk(31 * sr, 40 * sr)]
    assert all(c.end - c.start <= 30 * sr for c in chunks)
    assert chunks[-1].end == 170 * sr and sum(c.end - c.start for c in chunks[2:]) == 70 * sr


@pytest.mark.parametrize("beam_size", [None, 5])
def test_batched_matches_sequential_on_long_form_speech(tiny_en_torch, beam_size):
    from tingxie.batched import transcribe_batched

    require_shared()
    path, ref = str(audio_path("real_concat")), _words(_reference("real_concat"))
    sequential = tiny_en_torch.transcribe(path, beam_size=beam_size)
    batched = transcribe_batched(tiny_en_torch, path, batch_size=4, beam_size=beam_size)
    wer_seq, wer_batched = jiwer.wer(ref, _words(sequential.text)), jiwer.wer(ref, _words(batched.text))
    assert wer_batched <= wer_seq + 0.03, (wer_seq, wer_batched)
    assert jiwer.wer(_words(sequential.text), _words(batched.text)) <= 0.08
    starts = [s.start for s in batched.segments]
    assert starts == sorted(starts) and [s.id for s in batched.segments] == list(range(len(starts)))
    assert all(0 <= s.start < s.end <= batched.duration + 0.01 for s in batched.segments)


def test_batched_silence_gives_no_text(tiny_en_torch):
    from tingxie.batched import transcribe_batched

    require_shared()
    assert transcribe_batched(tiny_en_torch, str(audio_path("silence")), batch_size=2).text.strip() == ""


def test_batched_rejects_a_batch_size_below_one(tiny_en_torch):
    from tingxie.batched import transcribe_batched
    from tingxie.errors import OptionError

    require_shared()
    with pytest.raises(OptionError, match="batch_size"):
        transcribe_batched(tiny_en_torch, str(audio_path("jfk")), batch_size=0)


def test_batched_fallback_goes_on_from_the_second_temperature(monkeypatch):
    """A chunk whose batched decode (the first temperature's) fails the thresholds is decoded again from the second
    temperature on, not from the first once more (which gave the same result at the cost of a whole window)."""
    from tingxie import batched, load_model
    from tingxie.decoding import fallback

    require_shared()
    model = load_model("tiny.en", backend="onnx", compute_type="int8")
    firsts, temperatures = [], []
    original, original_decode = batched.decode_with_fallback, fallback.decode

    def recording(module, features, tokenizer, options, prompt=None, **kwargs):
        firsts.append(kwargs.get("first"))
        return original(module, features, tokenizer, options, prompt, **kwargs)

    def decode_recording(engine, features, tokenizer, options, **kwargs):
        temperatures.append(options.temperature)
        return original_decode(engine, features, tokenizer, options, **kwargs)

    monkeypatch.setattr(batched, "decode_with_fallback", recording)
    monkeypatch.setattr(fallback, "decode", decode_recording)
    # an average log-probability no real decode reaches: every chunk falls back
    result = batched.transcribe_batched(model, str(audio_path("jfk")), batch_size=2, logprob_threshold=-0.001)
    assert firsts and all(f is not None and f.result.temperature == 0.0 for f in firsts)  # each chunk's batch decode
    assert temperatures and 0.0 not in temperatures and set(temperatures) <= {0.2, 0.4, 0.6, 0.8, 1.0} and temperatures[0] == 0.2, temperatures
    assert "country" in result.text
