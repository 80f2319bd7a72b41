"""Local agreement: a word is final once two consecutive hypotheses of the growing buffer agree on it.

Pure logic, no model: each decode of the audio buffer gives a hypothesis (timed words, times from the
start of the stream). ``LocalAgreement.insert`` first strips the words already committed (the buffer
still holds their audio until it is trimmed), then commits the longest prefix the new hypothesis shares
with the previous one, and keeps the rest as the pending (partial) text.
"""

from __future__ import annotations

from collections import deque

from .events import TimedWord

# How far (s) a re-decoded committed word may drift from where it was first timed and still be recognised.
ALIGN_TOLERANCE = 1.0
# Committed words compared with the head of a hypothesis when looking for where the new words begin.
ALIGN_WORDS = 5
# Punctuation a forced prefix does not end with (see LocalAgreement.inside).
TRAILING_PUNCTUATION = ".,?!。，？！、"
# Committed words remembered for alignment and for the prompt.
HISTORY_WORDS = 200


def word_key(word: str) -> str:
    """What two spellings of a word must share to count as the same word: case and punctuation don't matter."""
    key = "".join(ch for ch in word.lower() if ch.isalnum())
    return key or word.strip()


def same_word(a: TimedWord, b: TimedWord) -> bool:
    return word_key(a.word) == word_key(b.word)


def common_prefix(a: list[TimedWord], b: list[TimedWord]) -> int:
    """Number of leading words ``a`` and ``b`` agree on."""
    n = 0
    while n < len(a) and n < len(b) and same_word(a[n], b[n]):
        n += 1
    return n


class LocalAgreement:
    """The committed words and the pending hypothesis of one stream."""

    def __init__(self) -> None:
        self.history: deque[TimedWord] = deque(maxlen=HISTORY_WORDS)
        self.pending: list[TimedWord] = []
        self.committed_count = 0

    @property
    def last_end(self) -> float:
        """End of the last committed word (0 before any)."""
        return self.history[-1].end if self.history else 0.0

    def new_words(self, hypothesis: list[TimedWord]) -> list[TimedWord]:
        """The part of ``hypothesis`` after what is already committed."""
        if not self.history:
            return list(hypothesis)
        cut = self._aligned_cut(hypothesis)
        if cut is None:
            # no word lines up with the committed tail: keep what lies after it in time
            last_end = self.last_end
            cut = next((i for i, w in enumerate(hypothesis) if (w.start + w.end) / 2 > last_end), len(hypothesis))
        return list(hypothesis[cut:])

    def _aligned_cut(self, hypothesis: list[TimedWord]) -> int | None:
        """Index just after the hypothesis word that re-transcribes the last committed word, if one does."""
        tail = list(self.history)[-ALIGN_WORDS:]
        last = tail[-1]
        best: tuple[int, float, int] | None = None  # (matched words, -drift, cut)
        for k, word in enumerate(hypothesis, start=1):
            drift = abs(word.end - last.end)
            if drift > ALIGN_TOLERANCE or not same_word(word, last):
                continue
            matched = 1
            while matched < len(tail) and matched < k and same_word(hypothesis[k - 1 - matched], tail[-1 - matched]):
                matched += 1
            candidate = (matched, -drift, k)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        return None if best is None else best[2]

    def insert(self, hypothesis: list[TimedWord], horizon: float | None = None) -> list[TimedWord]:
        """Take a new hypothesis; returns the words it commits (possibly none).

        Only words that end by ``horizon`` (a little before the end of the audio decoded) may be committed:
        a word cut off by the end of the buffer can be misheard the same way twice.
        """
        new = self.new_words(hypothesis)
        agreed = common_prefix(new, self.pending)
        if horizon is not None:
            while agreed and new[agreed - 1].end > horizon:
                agreed -= 1
        committed = self._commit(new[:agreed])
        self.pending = new[agreed:]
        return committed

    def flush(self) -> list[TimedWord]:
        """Commit the whole pending hypothesis (at a pause, or at the end of the stream)."""
        committed = self._commit(self.pending)
        self.pending = []
        return committed

    def flush_hypothesis(self, hypothesis: list[TimedWord]) -> list[TimedWord]:
        """Commit every new word of ``hypothesis`` at once (a decode of a finished utterance needs no second opinion)."""
        self.pending = self.new_words(hypothesis)
        return self.flush()

    def _commit(self, words: list[TimedWord]) -> list[TimedWord]:
        out = []
        for w in words:
            # times never run backwards, even when two decodes placed a word differently
            start = max(w.start, self.last_end)
            word = TimedWord(w.word, start, max(w.end, start), w.probability, w.segment_end)
            self.history.append(word)
            out.append(word)
        self.committed_count += len(out)
        return out

    def inside(self, after: float, leave_out: int = 1) -> str:
        """Committed text that ends after ``after`` (still inside the audio buffer that starts there), less its
        last ``leave_out`` words (a decode forced to start with all of it could only add words, or nothing at all)
        and less the punctuation after its last word: the decode that committed that word often ended near it, and
        Whisper ends a sentence where the audio ends; forced, "the wizard." made the next decode read a new sentence
        ("Who would vanish" for "who had vanished"). The decode sets that punctuation again where it belongs."""
        if self.last_end <= after:
            return ""
        words = [w.word for w in self.history if w.end > after]
        return "".join(words[: max(0, len(words) - leave_out)]).strip().rstrip(TRAILING_PUNCTUATION)

    def prompt(self, before: float, max_chars: int = 200) -> str:
        """Committed text that ends by ``before`` (the start of the audio buffer): the decoder's prompt."""
        kept: list[str] = []
        size = 0
        for w in reversed(self.history):
            if w.end > before:
                continue
            size += len(w.word)
            if size > max_chars:
                break  # whole words only
            kept.append(w.word)
        return "".join(reversed(kept)).strip()
