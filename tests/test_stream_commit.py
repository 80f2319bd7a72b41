"""AlignAtt's doubtful words (issue 22): a word Whisper gives a low probability waits for a second decode to agree,
the rest still commits from one decode (scripted hypotheses, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from tingxie.errors import OptionError
from tingxie.streaming.alignatt import AttentionCommit
from tingxie.streaming.events import TimedWord
from tingxie.streaming.options import StreamOptions
from tingxie.streaming.transcriber import StreamingTranscriber


def said(*words: tuple[str, float]) -> list[TimedWord]:
    """Words 0.3 s each from 0, with their probabilities."""
    return [TimedWord(w, round(0.3 * i, 3), round(0.3 * (i + 1), 3), p) for i, (w, p) in enumerate(words)]


def text(words) -> str:
    return "".join(w.word for w in words)


def test_a_doubtful_word_waits_for_a_second_decode_and_holds_back_what_follows():
    """base over a noisy meeting: one decode read "效果真的" (p 0.2-0.5) where the next read "销售问题"; committed at once,
    the wrong guess was final."""
    policy = AttentionCommit(min_probability=0.3)
    first = said(("首先", 0.9), ("说", 0.8), ("效", 0.2), ("果", 0.5))
    assert text(policy.insert(first, horizon=10.0)) == "首先说"  # likely words: final from this one decode
    assert text(policy.pending) == "效果"
    second = said(("首先", 0.9), ("说", 0.8), ("销", 0.25), ("售", 0.6), ("问题", 0.9))
    assert policy.insert(second, horizon=10.0) == []  # "销" is doubtful and the previous decode said "效"
    third = said(("首先", 0.9), ("说", 0.8), ("销", 0.1), ("售", 0.7), ("问题", 0.9))
    assert text(policy.insert(third, horizon=10.0)) == "销售问题"  # two decodes agree: the doubt is settled
    assert text(policy.history) == "首先说销售问题"


def test_the_attention_margin_still_holds_back_a_likely_word_and_zero_commits_every_word():
    policy = AttentionCommit(min_probability=0.3)
    assert text(policy.insert(said((" and", 0.9), (" so", 0.9), (" my", 0.9)), horizon=0.7)) == " and so"
    assert text(AttentionCommit(min_probability=0.0).insert(said((" ask", 0.05), (" not", 0.9)), horizon=10.0)) == " ask not"


def test_the_default_stream_applies_it_and_bad_values_are_refused():
    assert StreamOptions().alignatt_min_probability == 0.3
    decoded = [said((" we", 0.9), (" hold", 0.1), (" these", 0.9), (" truths", 0.9))]

    def decoder(audio, prompt, prefix):
        return [w for w in decoded[-1] if w.end <= len(audio) / 16000]

    stream = StreamingTranscriber(options=StreamOptions(vad=False, step_s=0.5, min_commit_s=0.5, alignatt_frames=5, start_commit_s=0), decoder=decoder)
    finals = [e.text for e in stream.accept(np.zeros(16000 * 2, dtype=np.float32)) if e.type == "final"]
    assert finals == ["we"]  # "hold" is doubtful: it and the words after it wait
    assert [e.text for e in stream.accept(np.zeros(8000, dtype=np.float32)) if e.type == "final"] == ["hold these truths"]
    for bad in (-0.1, 1.5):
        with pytest.raises(OptionError, match="alignatt_min_probability"):
            StreamOptions(alignatt_min_probability=bad)


def test_the_forced_prefix_leaves_the_punctuation_after_its_last_word_to_the_decode():
    """real_concat: "the wizard." was committed from a decode that ended there; forced with its period, the next decodes
    read a new sentence, "Who would vanish", where the speaker said "who had vanished" (issue 22)."""
    policy = AttentionCommit()
    policy.insert(said((" against", 0.9), (" the", 0.9), (" wizard.", 0.9), (" who", 0.9)), horizon=10.0)
    assert policy.inside(0.0) == "against the wizard"  # "who" is left out (it is decoded again); "wizard" loses its "."
    assert text(policy.history) == " against the wizard. who"  # what was committed (and shown) keeps its spelling
    policy.insert(said((" against", 0.9), (" the", 0.9), (" wizard.", 0.9), (" who", 0.9), (" had", 0.9), (" vanished", 0.9)), horizon=10.0)
    assert policy.inside(0.0) == "against the wizard. who had"  # inside the prefix, Whisper's own punctuation stays
    chinese = AttentionCommit()
    chinese.insert(said(("首先", 0.9), ("说。", 0.9), ("一下", 0.9)), horizon=10.0)
    assert chinese.inside(0.0) == "首先说"


def test_a_stream_forces_its_committed_words_without_the_period_a_buffer_end_put_after_them():
    spoken = [" the", " wizard", " who", " had", " vanished", " behind", " the", " curtain"]
    prefixes = []

    def decoder(audio, prompt, prefix):
        """Each decode ends a sentence where its audio ends, as Whisper does."""
        prefixes.append(prefix)
        heard = [TimedWord(w, 0.3 * i, 0.3 * (i + 1), 0.9) for i, w in enumerate(spoken) if 0.3 * (i + 1) <= len(audio) / 16000]
        return heard[:-1] + [TimedWord(heard[-1].word + ".", heard[-1].start, heard[-1].end, 0.9)] if heard else []

    stream = StreamingTranscriber(options=StreamOptions(vad=False, step_s=0.5, min_commit_s=0.5, alignatt_frames=5, start_commit_s=0), decoder=decoder)
    finals = [e.text for e in stream.accept(np.zeros(16000, dtype=np.float32)) if e.type == "final"]
    assert finals == ["the wizard who."]  # 1.0 s heard: the decode put a period after "who"
    for _ in range(3):
        stream.accept(np.zeros(8000, dtype=np.float32))
    # the next decodes are forced to start "the wizard who" (not "... who.", a sentence ended): the decode punctuates it
    assert prefixes[1:3] == ["the wizard", "the wizard who"]
    assert prefixes[3] == "the wizard who. had vanished"  # a period further in stays: only the last word ends at a cut
    assert not any(p.endswith(".") for p in prefixes)


@pytest.mark.parametrize(("language", "first_final_at"), [("zh", 3.0), ("en", 1.5), (None, 1.5)])
def test_an_unspaced_language_commits_nothing_from_a_buffer_under_min_commit_unspaced_s(language, first_final_at):
    """base guessed the first characters of a short Mandarin buffer ("还希望通现" for "还向通信") and one decode made them
    final; by the stream's language (a multilingual decoder's detected one), 3.0 s instead of 1.5 s."""
    assert (StreamOptions().min_commit_s, StreamOptions().min_commit_unspaced_s) == (1.5, 3.0)

    class Decoder:
        def __init__(self):
            self.language = language

        def __call__(self, audio, prompt, prefix):
            heard = len(audio) / 16000
            return [TimedWord(w, 0.25 * i, 0.25 * (i + 1), 0.9) for i, w in enumerate("销售问题首先说一下咱们的商场问题") if 0.25 * (i + 1) <= heard]

    stream = StreamingTranscriber(options=StreamOptions(vad=False, step_s=0.5, alignatt_frames=5, start_commit_s=0), decoder=Decoder())
    first = None
    for k in range(1, 7):
        if any(e.type == "final" for e in stream.accept(np.zeros(8000, dtype=np.float32))) and first is None:
            first = k * 0.5
    assert first == first_final_at
    with pytest.raises(OptionError, match="min_commit_unspaced_s"):
        StreamOptions(min_commit_unspaced_s=-1)
