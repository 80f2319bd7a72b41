"""Hotwords: the token trie and boosting filter on synthetic logits, the prompt, the tiny random model
(cached == eager with the filter), and real tiny.en on shared speech where it mis-spells a name."""

from __future__ import annotations

import pytest
import torch
from test_decoding_beam import DIMS, EagerModel, features, model  # noqa: F401  (module fixtures)

from tingxie.decoding.decoder import decode, initial_tokens
from tingxie.decoding.hotwords import TokenTrie, hotword_filter, hotword_prompt_tokens, parse_hotwords, spellings
from tingxie.options import DecodingOptions, build_options
from tingxie.tokenizer import get_tokenizer

TOKENIZER = get_tokenizer(False)
V = 51864


def ids(text: str) -> list[int]:
    return TOKENIZER.encode(text)


def boosted(filt, sampled: list[int], sample_begin: int = 3) -> dict[int, float]:
    """Token -> bonus the filter adds after ``sampled`` (with a dummy 3-token initial sequence)."""
    logits = torch.zeros(1, V)
    filt.apply(logits, torch.tensor([[0] * sample_begin + sampled]))
    return {t: logits[0, t].item() for t in torch.nonzero(logits[0]).flatten().tolist()}


def test_parse_and_spellings():
    assert parse_hotwords(" Kubernetes, ComfyUI,,kubernetes ,Kubernetes") == ("Kubernetes", "ComfyUI", "kubernetes")
    assert parse_hotwords(None) == () and parse_hotwords("  ") == ()
    assert spellings("kubectl") == ["kubectl", "Kubectl"] and spellings("ComfyUI") == ["ComfyUI"]


def test_trie_finds_prefixes_only():
    trie = TokenTrie([[1, 2, 3], [1, 4]])
    assert set(trie.find([1]).children) == {2, 4}
    assert trie.find([1, 2, 3]).terminal and not trie.find([1, 2, 3]).children
    assert trie.find([2]) is None and trie.first_tokens() == [1] and trie.max_len == 3


def test_boost_exactly_on_continuations():
    com, fy, ui = ids(" ComfyUI")
    start_com = ids("ComfyUI")[0]
    f = hotword_filter(TOKENIZER, "ComfyUI", 2.0, sample_begin=3)
    # at the start of the text: the first token of either spelling, at half the boost, nothing else
    assert boosted(f, []) == {com: 1.0, start_com: 1.0}
    # mid-text after an ordinary word: only the spelling after a space may begin
    assert boosted(f, ids(" the")) == {com: 1.0}
    # a hotword begun: its next token gets the full boost
    assert boosted(f, ids(" the") + [com]) == {com: 1.0, fy: 2.0}
    assert boosted(f, ids(" the") + [com, fy]) == {com: 1.0, ui: 2.0}
    # completed: nothing more, not even a word start (a strong boost would write the term again and again)
    assert boosted(f, ids(" the") + [com, fy, ui]) == {}
    assert boosted(f, ids(" the") + [com, fy, ui] + ids(" and")) == {com: 1.0}
    # the spelling without a space continues only where the text starts (here after a timestamp)
    assert boosted(f, [TOKENIZER.timestamp_begin, start_com]) == {com: 1.0, fy: 2.0}
    assert boosted(f, ids(" the") + [start_com]) == {com: 1.0}


def test_boost_per_row_of_a_batch():
    com, fy, _ = ids(" ComfyUI")
    f = hotword_filter(TOKENIZER, "ComfyUI", 3.0, sample_begin=1)
    logits = torch.zeros(2, V)
    f.apply(logits, torch.tensor([[0, *ids(" the")], [0, com]]))
    assert logits[0, fy] == 0 and logits[1, fy] == 3.0 and logits[0, com] == logits[1, com] == 1.5
    assert int((logits != 0).sum()) == 3


def test_boost_on_numpy_logits():
    """The ONNX Runtime path hands NumPy logits (which have a .device attribute in NumPy 2) to the filter."""
    import numpy as np

    com, fy, _ = ids(" ComfyUI")
    f = hotword_filter(TOKENIZER, "ComfyUI", 3.0, sample_begin=1)
    logits = np.zeros((2, V), dtype=np.float32)
    f.apply(logits, np.array([[0, *ids(" the")], [0, com]]))
    assert logits[0, fy] == 0 and logits[1, fy] == 3.0 and logits[0, com] == logits[1, com] == 1.5
    assert int((logits != 0).sum()) == 3


def test_no_filter_without_hotwords_or_boost():
    assert hotword_filter(TOKENIZER, None, 2.0, 3) is None
    assert hotword_filter(TOKENIZER, "ComfyUI", 0.0, 3) is None


def test_hotwords_prompt_before_previous_text_within_the_limit():
    previous = ids(" and then we went home")
    hot = ids(" Kubernetes, ComfyUI")
    assert hotword_prompt_tokens(TOKENIZER, "Kubernetes, ComfyUI", previous, 100) == hot + previous
    assert hotword_prompt_tokens(TOKENIZER, "Kubernetes, ComfyUI", previous, len(hot) + 2) == hot + previous[-2:]
    assert hotword_prompt_tokens(TOKENIZER, "Kubernetes, ComfyUI", previous, 3) == hot[:3]


def test_initial_tokens_with_hotwords_and_not_with_a_prefix():
    sot = list(TOKENIZER.sot_sequence)
    tokens = initial_tokens(TOKENIZER, DecodingOptions(hotwords="ComfyUI", prompt="so we", hotword_prompt_budget=16), 448, 224)
    assert tokens == [TOKENIZER.sot_prev, *ids(" ComfyUI"), *ids(" so we"), *sot]
    # by default the glossary is boosted only, never put in the prompt
    assert initial_tokens(TOKENIZER, DecodingOptions(hotwords="ComfyUI", prompt="so we"), 448, 224) == [TOKENIZER.sot_prev, *ids(" so we"), *sot]
    with_prefix = initial_tokens(TOKENIZER, DecodingOptions(hotwords="ComfyUI", prefix="Then"), 448, 224)
    assert with_prefix == [*sot, *ids(" Then")]
    assert initial_tokens(TOKENIZER, DecodingOptions(prompt="so we"), 448, 224) == [TOKENIZER.sot_prev, *ids(" so we"), *sot]


def test_options_pass_through():
    options = build_options(hotwords="Kubernetes", hotword_boost=1.5, beam_size=5)
    assert str(options.decoding.hotwords) == "Kubernetes" and options.decoding.hotword_boost == 1.5
    assert options.window_decoding(0.4).hotwords.terms == ("Kubernetes",)


# the random model's logits are large; a boost this strong makes sure the hotword is spelled whole
BOOSTED = {
    "greedy": DecodingOptions(language="en", temperature=0.0, hotwords="ComfyUI, Kubernetes", hotword_boost=100.0),
    "beam3": DecodingOptions(language="en", temperature=0.0, beam_size=3, hotwords="ComfyUI, Kubernetes", hotword_boost=100.0),
}


@pytest.mark.parametrize("name", BOOSTED)
def test_cached_equals_eager_with_hotwords(model, features, name):  # noqa: F811
    run = lambda m: [(r.tokens, r.sum_logprob) for r in decode(m, features, TOKENIZER, BOOSTED[name])]  # noqa: E731
    cached, eager = run(model), run(EagerModel(model))
    assert [t for t, _ in cached] == [t for t, _ in eager]
    assert [s for _, s in cached] == pytest.approx([s for _, s in eager], abs=1e-3)
    spelled = {tuple(ids(" ComfyUI")), tuple(ids(" Kubernetes")), tuple(ids("ComfyUI")), tuple(ids("Kubernetes"))}
    windows_with_hotword = sum(any(tuple(t[i : i + len(s)]) == s for s in spelled for i in range(len(t))) for t, _ in cached)
    assert windows_with_hotword > 0, "the boost never produced a hotword"


def test_real_tiny_en_spells_comfyui_only_with_hotwords(tiny_en, shared):
    from conftest import audio_path

    audio = audio_path("comfyui_hotword")
    plain = tiny_en.transcribe(audio).text
    assert "ComfyUI" not in plain and "comfy eye" in plain  # the golden mis-spelling
    for beam_size in (None, 5):  # the defaults: the window's second pass puts the term its first pass mis-spelled in the prompt
        hot = tiny_en.transcribe(audio, hotwords="ComfyUI", beam_size=beam_size).text
        assert hot.count("ComfyUI") == 2, hot
    for beam_size in (None, 5):  # a short glossary fits a small prompt budget whole: the prompt spells it in one pass
        hot = tiny_en.transcribe(audio, hotwords="ComfyUI", hotword_prompt_budget=16, hotword_second_pass=False, beam_size=beam_size).text
        assert hot.count("ComfyUI") == 2, hot


def test_cli_default_path_spells_comfyui_with_hotwords(shared, tmp_path):
    """`tingxie transcribe --hotwords ComfyUI` with every other option at its default (ONNX Runtime, int8 on a CPU) spells the term."""
    import subprocess
    import sys

    from conftest import REPO, audio_path

    run = subprocess.run([sys.executable, "-m", "tingxie", "transcribe", str(audio_path("comfyui_hotword")), "--hotwords", "ComfyUI",
                          "--output_format", "txt", "--output_dir", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert (tmp_path / "comfyui_hotword.txt").read_text(encoding="utf-8").count("ComfyUI") == 2


def test_real_tiny_en_boost_alone_changes_the_spelling(tiny_en, shared):
    """The logit boost without the prompt: 'comfy UI'-like spellings become the hotword's."""
    from conftest import audio_path

    from tingxie.audio import N_FRAMES, decode_audio, pad_or_trim

    mel = pad_or_trim(tiny_en.engine.log_mel(decode_audio(str(audio_path("comfyui_hotword")))), N_FRAMES)[None]
    tokenizer = tiny_en.tokenizer("en")
    options = DecodingOptions(language="en")
    plain = decode(tiny_en.engine, mel, tokenizer, options)[0].text
    filt = hotword_filter(tokenizer, "ComfyUI", 6.0, len(tokenizer.sot_sequence))  # alone it needs more than the default 2.0
    boosted_text = decode(tiny_en.engine, mel, tokenizer, options, extra_filters=[filt])[0].text
    assert "ComfyUI" not in plain and "ComfyUI" in boosted_text, (plain, boosted_text)


def test_server_takes_hotwords(tiny_en, shared):
    from test_server_support import clip, openai_client, running_servers

    servers = running_servers(tiny_en)
    server = next(servers)
    try:
        client = openai_client(server.url)
        with open(clip("comfyui_hotword"), "rb") as f:
            with_hotwords = client.audio.transcriptions.create(model="tiny.en", file=f, extra_body={"hotwords": "ComfyUI:1.5"})
        with open(clip("comfyui_hotword"), "rb") as f:
            without = client.audio.transcriptions.create(model="tiny.en", file=f)
    finally:
        servers.close()
    assert "ComfyUI" in with_hotwords.text and "ComfyUI" not in without.text
