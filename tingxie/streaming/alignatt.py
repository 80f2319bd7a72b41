"""Attention-guided commits (AlignAtt, Papi et al., Interspeech 2023; as Simul-Whisper, Wang et al., Interspeech 2024).

Whisper's alignment heads attend, for each emitted token, to the audio frames it was read from. While a word's
attention stays clear of the end of the audio buffer, the model has heard all of it; a word whose attention reaches
the last few frames is being read from audio that is cut off (or invented past its end). So each decode commits its
new words up to the first one whose aligned end lies within that margin: from ONE decode, without waiting for a
second to agree (local agreement's cost: a word is final one step later). The words' times are the buffer decoder's
DTW path over the alignment heads' cross-attention (``tingxie.timing``), so a word's end is where its attention ends.
"""

from __future__ import annotations

from .agreement import LocalAgreement, common_prefix
from .events import TimedWord


class AttentionCommit(LocalAgreement):
    """The committed words and the pending hypothesis of one stream, committing by attention instead of agreement.

    Shares local agreement's bookkeeping (aligning a hypothesis with the committed tail, the prompt, the forced
    prefix, flushing at pauses); only ``insert`` differs. ``min_probability``: a word Whisper itself gives less than
    this is committed only once the previous hypothesis had it too (local agreement for the doubtful words only).
    """

    def __init__(self, min_probability: float = 0.0) -> None:
        super().__init__()
        self.min_probability = min_probability

    def insert(self, hypothesis: list[TimedWord], horizon: float | None = None) -> list[TimedWord]:
        """Commit the new words of ``hypothesis`` that end by ``horizon`` (the end of the decoded audio less the
        attention margin) and are likely enough or agreed, up to the first that is not; the rest is pending."""
        new = self.new_words(hypothesis)
        agreed = common_prefix(new, self.pending)
        ready = 0
        for i, w in enumerate(new):
            if (horizon is not None and w.end > horizon) or (w.probability < self.min_probability and i >= agreed):
                break
            ready = i + 1
        committed = self._commit(new[:ready])
        self.pending = new[ready:]
        return committed


def commit_policy(name: str, min_probability: float = 0.0) -> LocalAgreement:
    """A fresh policy object by its ``StreamOptions.policy`` name (``min_probability``: alignatt's, see AttentionCommit)."""
    return AttentionCommit(min_probability) if name == "alignatt" else LocalAgreement()
