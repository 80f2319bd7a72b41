"""The streaming transcriber: audio chunks in, ``partial`` and ``final`` events out.

Audio goes through the VAD gate window by window (32 ms): silence is skipped (only a short pre-roll is
kept), speech opens an utterance buffer. Every ``step_s`` of new audio the buffer is decoded with the
committed text before it as the prompt; the commit policy (attention-guided by default, or local agreement of
consecutive hypotheses) commits words (``final``), the rest is the ``partial``. The buffer is cut at committed segment ends (or, when it grows
long, at the widest pause between committed words), and a pause of ``pause_s`` finalises everything said so
far. A cut inside an utterance keeps about ``context_s`` of committed speech: the next decodes hear what came
before the new words, and are forced to start with its text. A pause starts the next utterance afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..tokenizer import UNSPACED_LANGUAGES
from .alignatt import commit_policy
from .events import StreamEvent, TimedWord, final, partial
from .gate import SpeechGate
from .options import StreamOptions

SAMPLE_RATE = 16000
WINDOW = 512  # the VAD's window: the gate's resolution

# decoder(audio, prompt, prefix) -> words with times from the start of ``audio``, or None for a decode not to be trusted
Decoder = Callable[[np.ndarray, str, str], "list[TimedWord] | None"]
SENTENCE_END = (".", "?", "!", "。", "？", "！")
TAIL_S = 0.2  # silence kept after the last speech when an utterance is decoded for the last time
# degraded modes when decoding falls behind real time: (greedy instead of beams, step multiplied by). Longer steps
# first: a decode's cost is mostly its 30-s encoder window, which beams do not change, and greedy costs WER
DEGRADED = ((False, 1.0), (False, 2.0), (True, 4.0))


def _silence_dropped(silence: int) -> int:
    """Samples of a trailing silence left out of an utterance's last decode (all but TAIL_S: Whisper invents words in silence)."""
    return max(0, silence - int(TAIL_S * SAMPLE_RATE))


@dataclass
class StreamStats:
    """Work done so far, for benchmarks and logs."""

    audio_seconds: float = 0.0
    decodes: int = 0
    decode_seconds: float = 0.0
    longest_buffer_seconds: float = 0.0


class _Audio:
    """A growing run of samples kept as a list of chunks (joined only when decoded), with its absolute start."""

    def __init__(self, start: int = 0) -> None:
        self.start = start
        self._chunks: list[np.ndarray] = []
        self.length = 0

    @property
    def end(self) -> int:
        return self.start + self.length

    def append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._chunks.append(samples)
            self.length += len(samples)

    def samples(self) -> np.ndarray:
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)]
        return self._chunks[0]

    def drop_before(self, sample: int) -> None:
        """Forget the samples before absolute index ``sample``."""
        cut = min(max(0, sample - self.start), self.length)
        if cut:
            rest = self.samples()[cut:]
            self._chunks, self.length, self.start = [rest], len(rest), self.start + cut

    def tail(self, n: int) -> np.ndarray:
        return self.samples()[max(0, self.length - n) :]


class StreamingTranscriber:
    """One stream's state. Not thread-safe: feed it from one thread (several transcribers may share a model)."""

    def __init__(self, model=None, options: StreamOptions = StreamOptions(), *, vad=None, decoder: Decoder | None = None,
                 fast_decoder: Decoder | None = None) -> None:
        """``fast_decoder``: the greedy decoder of degraded modes (built from ``model`` when not given; with neither,
        degraded modes only decode less often)."""
        if decoder is None:
            if model is None:
                raise ValueError("give a model (or a decoder)")
            from .decode import BufferDecoder

            decoder = BufferDecoder(model, options)
        self.options = options
        self.decoder = decoder
        self._model = model
        self._full_decoder = decoder
        self._fast_decoder = fast_decoder
        self._step_s = options.step_s
        self.level = 0  # the degraded mode in use (an index of DEGRADED)
        self.closed = False  # set by close(): no decode starts after it
        self.agreement = commit_policy(options.policy, options.alignatt_min_probability)
        self.stats = StreamStats()
        self.received = 0  # samples accepted so far: the stream's clock
        self._buffer = _Audio()  # the utterance being decoded
        self._decoded_to = 0  # absolute sample the last decode reached
        self._last_partial = ""
        if options.vad:
            from ..vad import load_vad

            self._vad = (vad or load_vad()).stream()
            exit_threshold = max(options.vad_threshold - 0.15, 0.01)
            self._gate: SpeechGate | None = SpeechGate(options.vad_threshold, exit_threshold, round(options.pause_s * SAMPLE_RATE / WINDOW))
            self._endpoint_windows = max(1, round(options.endpoint_s * SAMPLE_RATE / WINDOW)) if 0 < options.endpoint_s < options.pause_s else 0
            self._endpointed = False  # every word before the current silence is final already
            self._held: int | None = None  # samples of silence kept in the buffer since a pause held (start_commit_s)
            # (where that silence began, where a new utterance's buffer would have begun) once speech came back
            self._merged: tuple[int, int] | None = None
            self._pending = np.zeros(0, dtype=np.float32)  # samples the VAD has not scored yet
            self._preroll = _Audio()
        else:
            self._gate = None
            self._held, self._merged = None, None
            self._pending = np.zeros(0, dtype=np.float32)

    @property
    def in_utterance(self) -> bool:
        return self._gate is None or self._gate.in_speech

    def degrade(self, level: int) -> None:
        """Switch to degraded mode ``level`` (0: as configured; 1: steps twice as long; 2: greedy decodes, steps four
        times as long) to catch up with real time when decoding falls behind."""
        level = min(max(0, level), len(DEGRADED) - 1)
        greedy, step_factor = DEGRADED[level]
        if greedy and self._fast_decoder is None and self._model is not None and self.options.beam_size is not None:
            from dataclasses import replace

            from .decode import BufferDecoder

            self._fast_decoder = BufferDecoder(self._model, replace(self.options, beam_size=None))
        self.decoder = (self._fast_decoder or self._full_decoder) if greedy else self._full_decoder
        self._step_s = self.options.step_s * step_factor
        self.level = level

    def close(self) -> None:
        """Stop: no decode starts after this (one already running finishes); later calls return no events."""
        self.closed = True

    def accept(self, samples: np.ndarray) -> list[StreamEvent]:
        """Take the next chunk of 16 kHz mono float32 audio; returns the events it caused (often none)."""
        if self.closed:
            return []
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        events: list[StreamEvent] = []
        start = self.received
        self.received += len(samples)
        self.stats.audio_seconds = self.received / SAMPLE_RATE
        if self._gate is None:
            self._buffer.append(samples)
            if self._buffer.length / SAMPLE_RATE >= self.options.hard_buffer_s:
                events += self._decode_step()
        else:
            events += self._gate_windows(samples, start)
        if self.in_utterance and self._due():
            events += self._decode_step()
        return events

    def finish(self) -> list[StreamEvent]:
        """The end of the stream: decode what is left and commit everything."""
        if self.closed:
            return []
        if self._gate is not None and self._gate.in_speech:
            self._buffer.append(self._pending)
        self._pending = np.zeros(0, dtype=np.float32)
        held, self._held = self._held or 0, None  # a pause still held at the end: its silence is a trailing one
        return self._finalize(drop_tail=_silence_dropped(held)) if self._buffer.length or self.agreement.pending else []

    # ------------------------------------------------------------------------------------------ gate

    def _gate_windows(self, samples: np.ndarray, start: int) -> list[StreamEvent]:
        self._pending = np.concatenate([self._pending, samples])
        probs = self._vad.accept(samples)
        events: list[StreamEvent] = []
        assert self._gate is not None
        for k, p in enumerate(probs):
            window = self._pending[k * WINDOW : (k + 1) * WINDOW]
            at = self._vad.samples_done - (len(probs) - k) * WINDOW  # absolute index of the window
            transition = self._gate.update(float(p))
            if transition == "silence" and self._held is not None:
                # the stream's first words, held over a pause: the silence stays in the buffer until speech comes back,
                # or until the buffer is long enough to commit from (then it ends as any utterance does)
                self._buffer.append(window)
                self._held += len(window)
                if self._buffer.length / SAMPLE_RATE >= self.options.start_commit_s:
                    events += self._finalize(drop_tail=_silence_dropped(self._held))
            elif transition == "silence":
                self._keep_preroll(window, at)
            elif transition == "onset" and self._held is not None:
                silence_start = self._buffer.end - self._held
                if self._merged is None:
                    self._merged = (silence_start, max(silence_start, self._buffer.end - int(self.options.preroll_s * SAMPLE_RATE)))
                self._held = None
                self._buffer.append(window)
                self._preroll = _Audio(self._buffer.end)
            elif transition == "onset":
                # no context over a pause: carried over, it made Whisper run sentences together ("Americans. Ask"
                # became "Americans asked") and did not measurably lower declaration_tts's WER
                self._buffer = self._preroll
                self._buffer.append(window)
                self._preroll = _Audio(self._buffer.end)
            else:
                self._buffer.append(window)
                silent = self._gate.silent_windows
                if transition == "pause" and self._warming():
                    self._held = self._gate.pause_windows * WINDOW  # not the end of the utterance yet: see start_commit_s
                elif transition == "pause":
                    # the pause itself is left out of the last decode (beyond a short tail)
                    events += self._finalize(drop_tail=_silence_dropped(self._gate.pause_windows * WINDOW), decode=not self._endpointed)
                elif self._buffer.length / SAMPLE_RATE >= self.options.hard_buffer_s:
                    events += self._decode_step()
                elif silent and silent == self._endpoint_windows and self._buffer.length / SAMPLE_RATE >= self._min_commit_s():
                    events += self._decode_step(commit_all=True)  # an endpoint: the words before this silence are whole
                    self._endpointed = not self.agreement.pending
                if not silent:
                    self._endpointed = False
        self._pending = self._pending[len(probs) * WINDOW :]
        return events

    def _keep_preroll(self, window: np.ndarray, at: int) -> None:
        keep = int(self.options.preroll_s * SAMPLE_RATE)
        if self._preroll.end != at:  # after an utterance, the pre-roll restarts where the audio is
            self._preroll = _Audio(at)
        self._preroll.append(window)
        if self._preroll.length > keep + WINDOW:
            self._preroll.drop_before(self._preroll.end - keep)

    # ------------------------------------------------------------------------------------------ decoding

    def _due(self) -> bool:
        new = (self._buffer.end - max(self._decoded_to, self._buffer.start)) / SAMPLE_RATE
        return new >= self._step_s and self._buffer.length / SAMPLE_RATE >= self.options.min_decode_s

    def _warming(self) -> bool:
        """The stream's first words: nothing committed yet, and a buffer shorter than ``start_commit_s``."""
        return not self.agreement.history and self._buffer.length / SAMPLE_RATE < self.options.start_commit_s

    def _min_commit_s(self) -> float:
        """The shortest buffer a commit may come from, by the stream's language (detected by the first decode when not given)."""
        language = getattr(self.decoder, "language", None) or self.options.language
        return self.options.min_commit_unspaced_s if language in UNSPACED_LANGUAGES else self.options.min_commit_s

    def _decode(self, drop_tail: int = 0) -> list[TimedWord] | None:
        if self.closed:
            return None
        audio = self._buffer.samples()
        audio = audio[: max(0, len(audio) - drop_tail)]
        offset = self._buffer.start / SAMPLE_RATE
        started = time.perf_counter()
        prefix = self.agreement.inside(offset) if self.options.prefix_committed else ""
        words = self.decoder(audio, self.agreement.prompt(offset, self.options.prompt_chars), prefix)
        self.stats.decodes += 1
        self.stats.decode_seconds += time.perf_counter() - started
        self.stats.longest_buffer_seconds = max(self.stats.longest_buffer_seconds, len(audio) / SAMPLE_RATE)
        self._decoded_to = self._buffer.end - drop_tail
        return None if words is None else [w.shifted(offset) for w in words]

    def _decode_step(self, commit_all: bool = False) -> list[StreamEvent]:
        """Decode the buffer, commit what the policy allows (``commit_all``: every word, at an endpoint), trim."""
        if self._warming():
            commit_all = False  # not even at an endpoint: see start_commit_s
        words = self._decode()
        if words is None:
            return []
        if self._merged is not None and not self._warming():
            # at an endpoint, the words after the held pause are whole too: decode them again on their own
            return self._split_merged(words) + (self._decode_step(commit_all=True) if commit_all else [])
        horizon = self._buffer.end / SAMPLE_RATE - (0.0 if commit_all else self.options.commit_horizon_s)
        if self._buffer.length / SAMPLE_RATE < self._min_commit_s() or self._warming():
            horizon = float("-inf")
        if commit_all:
            committed = self.agreement.flush_hypothesis([w for w in words if w.end <= horizon])
            events = [final(committed)] if committed else []
            return events + self._trim() + self._partial()
        committed = self.agreement.insert(words, horizon)
        events = [final(committed)] if committed else []
        events += self._trim()
        return events + self._partial()

    def _split_merged(self, words: list[TimedWord]) -> list[StreamEvent]:
        """The first decode long enough to commit the stream's first words from, over them, a held pause and the speech
        after it: the words before the pause are final (whole, as at an endpoint), then the buffer starts where that
        speech's own utterance would have (heard together, Whisper ran the two together: "Americans asked not")."""
        silence_start, resume = self._merged or (0, 0)
        self._merged = None
        committed = self.agreement.flush_hypothesis([w for w in words if w.end <= silence_start / SAMPLE_RATE + TAIL_S])
        self.agreement.pending = []
        self._buffer.drop_before(resume)
        events = [final(committed)] if committed else []
        return events + self._partial()

    def _finalize(self, drop_tail: int = 0, decode: bool = True) -> list[StreamEvent]:
        """Decode the whole utterance once more (less ``drop_tail`` samples of trailing silence; not when ``decode`` is
        False: every word before the pause is final already) and commit all of it; the buffer starts afresh."""
        self._held, self._merged = None, None
        spoken = (self._buffer.length - drop_tail) / SAMPLE_RATE
        words = self._decode(drop_tail) if decode and spoken >= self.options.min_decode_s else None
        committed = self.agreement.flush() if words is None else self.agreement.flush_hypothesis(words)
        self._buffer = _Audio(self._buffer.end)
        self._decoded_to = self._buffer.end
        events = [final(committed)] if committed else []
        return events + self._partial()

    def _committed_inside(self) -> tuple[list[TimedWord], list[TimedWord | None], list[int]]:
        """The committed words still in the buffer, the word after each, and which of them a cut may follow
        (those ending ``context_s`` or more before the last committed word)."""
        start_s = self._buffer.start / SAMPLE_RATE
        inside = [w for w in self.agreement.history if w.end > start_s] if self.agreement.last_end > start_s else []
        following = [*inside[1:], self.agreement.pending[0] if self.agreement.pending else None]
        latest = self.agreement.last_end - self.options.context_s
        return inside, following, [i for i, w in enumerate(inside) if w.end <= latest + 1e-9]

    def _trim(self) -> list[StreamEvent]:
        """Cut the buffer after the last committed sentence or segment end; when it is long, at the widest pause
        between committed words; when it is far too long, commit everything and start afresh. A cut keeps
        ``context_s`` of committed speech."""
        opts = self.options
        length_s = self._buffer.length / SAMPLE_RATE
        inside, following, candidates = self._committed_inside()
        ends = [i for i in candidates if inside[i].segment_end or inside[i].word.rstrip().endswith(SENTENCE_END)] if length_s > opts.trim_after_s else []
        cut = None
        if ends:
            cut = _gap_middle(inside[ends[-1]], following[ends[-1]])
        elif length_s > opts.max_buffer_s and candidates:
            widest = max(candidates, key=lambda i: (_gap(inside[i], following[i]), i))
            cut = _gap_middle(inside[widest], following[widest])
        events: list[StreamEvent] = []
        if cut is None and length_s > opts.hard_buffer_s:
            # nothing agreed for far too long: commit the guess rather than outgrow Whisper's window
            committed = self.agreement.flush()
            if committed:
                events.append(final(committed))
            cut = self.agreement.last_end if committed else self._buffer.end / SAMPLE_RATE
        if cut is not None:
            self._buffer.drop_before(int(round(cut * SAMPLE_RATE)))
        return events

    def _partial(self) -> list[StreamEvent]:
        event = partial(self.agreement.pending)
        if event.text == self._last_partial:
            return []
        self._last_partial = event.text
        return [event]


def _gap(word: TimedWord, following: TimedWord | None) -> float:
    return 0.0 if following is None else max(0.0, following.start - word.end)


def _gap_middle(word: TimedWord, following: TimedWord | None) -> float:
    """Where to cut between two words: the middle of the silence between them (word times are only ~0.1 s sure)."""
    return word.end + _gap(word, following) / 2
