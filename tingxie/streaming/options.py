"""The streaming transcriber's settings: one frozen object, built by the CLI, the server or a caller."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OptionError

# commit policies: attention-guided (AlignAtt) commits from one decode; local agreement waits for two decodes to agree
POLICIES = ("alignatt", "local-agreement")
FRAME_S = 0.02  # one encoder frame (Whisper's cross-attention resolution)


@dataclass(frozen=True)
class StreamOptions:
    """How often to decode, when to finalise, how much audio to keep (seconds unless named otherwise)."""

    language: str | None = None  # None: English for .en models, detected once from the first speech otherwise
    task: str = "transcribe"
    step_s: float = 0.5  # new audio that triggers another decode of the buffer (more if decoding is slower)
    vad: bool = True  # Silero VAD: skip silence, finalise at pauses
    vad_threshold: float = 0.5
    pause_s: float = 0.5  # silence after speech that finalises everything heard so far
    # a shorter silence after speech: decode at once and make every word heard so far final (the words before a
    # silence are whole), keeping the buffer (the speaker may go on); 0: only at pause_s
    endpoint_s: float = 0.2
    preroll_s: float = 0.3  # silence kept in front of speech, so its first sound is not clipped
    trim_after_s: float = 0.0  # the buffer is cut at a committed sentence end only once it is longer than this
    max_buffer_s: float = 10.0  # past this, the buffer is cut at the widest pause between committed words
    hard_buffer_s: float = 24.0  # past this, everything pending is committed (Whisper sees at most 30 s)
    # committed speech kept in front of the words still to decode when the buffer is cut inside an utterance (its
    # text forced as the prefix): Whisper misreads the first words of audio that starts cold. Not kept over a pause.
    # bench/realtime.py, declaration_tts streamed WER: greedy 28.6% with 0 (cut right after committed words), 23.5-26.6% with 4;
    # 5 beams int8: 22.0-22.5% with 4, 20.5% with 6 (both files 16.1%), 18.2% on both files with 8
    context_s: float = 6.0
    min_decode_s: float = 0.3  # a buffer shorter than this is not decoded
    # a decode of a buffer shorter than this commits nothing (its words are only the partial): in a fraction of a second
    # of speech Whisper guesses ("what your" was "Thank you."), and alignatt would commit the guess at once
    min_commit_s: float = 1.5
    # the same for languages written without spaces (Chinese, Japanese, Thai...): `base` guesses a short buffer's first
    # characters of Mandarin ("还希望通现" for "还向通信") and one decode made them final. bench/RESULTS.md, issue 22's fifth
    # session (--clock steps, base: zh_dev CER 16.7 % with 1.5, 12.6 % with 2.5, 10.6 % with 3.0, offline 12.1 %; English
    # keeps 1.5: with 2.5 its final latency p90 rose 0.90 -> 1.85 s and its WER did not fall)
    min_commit_unspaced_s: float = 3.0
    # the stream's first words are final only from a decode of this much audio, and a pause before then keeps them in
    # the buffer (with the silence) until speech comes back or the buffer is this long: with no text before them and a
    # short buffer, tiny.en read "And so my fellow Americans" (2.4 s, then a pause) as "And so am I" from every 2.1-3.0 s
    # buffer and as "my" from most of 3.5-5 s (bench/RESULTS.md, issue 22's fifth session); 0: no such wait
    start_commit_s: float = 4.0
    policy: str = "alignatt"  # see POLICIES; bench/realtime.py picked it (bench/RESULTS.md)
    # alignatt: a word whose attention (its DTW-aligned end) lies within the last this many encoder frames is not
    # committed yet, nor is anything after it (Papi et al. 2023's f). 15 (0.3 s): bench/RESULTS.md, issue 22's second
    # session (real_concat in process: 10 frames 6.8 % WER, 15 5.4 %, 20 6.1 %; final latency falls 0.1 s per 5 frames)
    alignatt_frames: int = 15
    # alignatt: a word Whisper gives less than this probability waits until a second decode agrees on it (0: every
    # word commits from one decode). 0.3: bench/RESULTS.md, issue 22 (--clock steps: Mandarin with base 33.7 -> 28.1 %
    # CER, noisy single decodes no longer final; real_concat 7.4 -> 6.8 % WER, final latency p90 0.84 -> 0.90 s)
    alignatt_min_probability: float = 0.3
    commit_margin_s: float = 0.3  # local-agreement: a word ending closer than this to the end of the decoded audio is not committed yet
    min_word_probability: float = 0.01  # words Whisper itself finds this unlikely are dropped (invented in near-silence)
    prefix_committed: bool = True  # force committed text still in the buffer as the decode's prefix (not decoded again)
    prompt_chars: int = 200  # committed text given to the decoder as the prompt
    temperatures: tuple[float, ...] = (0.0,)  # fallback temperatures of each decode; one keeps hypotheses stable
    # beam search: bench/realtime.py (tiny.en, int8, 2 cores) streamed WER 22.6% greedy -> 17.3% with 5 beams, median
    # final latency 1.0 -> 1.1 s; None decodes greedily (the fastest)
    beam_size: int | None = 5
    # the encoder reads the buffer and this much of the silent padding after it, not the whole 30-s window, where the
    # engine can (ONNX Runtime); None: the whole window, the reference's arithmetic
    encode_margin_s: float | None = None

    @property
    def commit_horizon_s(self) -> float:
        """How far before the end of the decoded audio a word must end to be committed."""
        return self.alignatt_frames * FRAME_S if self.policy == "alignatt" else self.commit_margin_s

    def __post_init__(self) -> None:
        positive = ("step_s", "pause_s", "max_buffer_s", "hard_buffer_s", "min_decode_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise OptionError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("preroll_s", "commit_margin_s", "context_s", "min_commit_s", "min_commit_unspaced_s", "start_commit_s", "endpoint_s"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.max_buffer_s <= self.hard_buffer_s <= 28:
            raise OptionError(f"need max_buffer_s <= hard_buffer_s <= 28 (Whisper decodes 30-s windows), got {self.max_buffer_s} and {self.hard_buffer_s}")
        if self.context_s >= self.max_buffer_s:
            raise OptionError(f"context_s must be below max_buffer_s, got {self.context_s} and {self.max_buffer_s}")
        if not 0 < self.vad_threshold < 1:
            raise OptionError(f"vad_threshold must be between 0 and 1, got {self.vad_threshold}")
        if self.task not in ("transcribe", "translate"):
            raise OptionError(f"task must be 'transcribe' or 'translate', not {self.task!r}")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise OptionError(f"temperatures must be one or more values >= 0, got {self.temperatures}")
        if self.policy not in POLICIES:
            raise OptionError(f"policy must be one of {', '.join(POLICIES)}, not {self.policy!r}")
        if not 0 <= self.alignatt_min_probability <= 1:
            raise OptionError(f"alignatt_min_probability must be in [0, 1], got {self.alignatt_min_probability}")
        if self.alignatt_frames < 0:
            raise OptionError(f"alignatt_frames must be >= 0, got {self.alignatt_frames}")
        if self.beam_size is not None and self.beam_size < 1:
            raise OptionError(f"beam_size must be >= 1, got {self.beam_size}")
        if not 0 <= self.min_word_probability < 1:
            raise OptionError(f"min_word_probability must be in [0, 1), got {self.min_word_probability}")
        if self.encode_margin_s is not None and self.encode_margin_s < 0:
            raise OptionError(f"encode_margin_s must be >= 0 or None, got {self.encode_margin_s}")
        if self.prompt_chars < 0:
            raise OptionError(f"prompt_chars must be >= 0, got {self.prompt_chars}")
