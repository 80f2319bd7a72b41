"""One decode of the audio buffer: a single 30-s window, timed words out.

The long-form loop (``WhisperModel.transcribe``) would slide on to a second window when the last segment
ends early; a stream only wants the one window over its buffer, so the steps are composed here from the
core's parts: log-mel, encoder, decode with fallback, split at timestamps, word alignment.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, pad_or_trim
from ..decoding import decode_with_fallback
from ..decoding.nonspeech import is_nonspeech
from ..decoding.window import compression_ratio
from ..engine import window_features
from ..options import DecodingOptions, TranscribeOptions
from ..timing import add_word_timestamps
from ..tokenizer import UNSPACED_LANGUAGES
from ..window_step import INPUT_STRIDE, TIME_PRECISION, is_silence, split_at_timestamps
from .events import TimedWord
from .options import StreamOptions

# Decoded tokens allowed per second of audio (speech runs at 3-5): bounds the cost of a decode that loops.
TOKENS_PER_SECOND = 8
# zeros after the buffer before its STFT: past every frame that reads one of its samples (n_fft 400), so the last
# column is a silent frame at the floor
MEL_PADDING = 800
# a word this many times in a row is a loop ("啊啊啊啊啊" over noise), not speech: the decode is not trusted
LOOP_WORDS = 5
LOOP_RUNS = 3


class BufferDecoder:
    """``decoder(audio, prompt, prefix) -> [TimedWord] | None``: the words of ``audio`` (<= 30 s, 16 kHz), times from its start.

    None means the decode is not to be trusted (it fell into a repetition loop): the stream keeps its last hypothesis.
    """

    def __init__(self, model, options: StreamOptions) -> None:
        self.model = model
        self.options = options
        self.language = _language_for(model, options.language)
        self.transcribe_options = TranscribeOptions(
            decoding=DecodingOptions(task=options.task, language=self.language, beam_size=options.beam_size),
            temperature=options.temperatures,
        )
        self._tokenizer = model.tokenizer(self.language, options.task) if self.language else None

    def __call__(self, audio: np.ndarray, prompt: str = "", prefix: str = "") -> list[TimedWord] | None:
        """``prompt``: text said before ``audio``; ``prefix``: text already committed for its start, forced, not re-decoded."""
        if len(audio) > N_SAMPLES:
            raise ValueError(f"a stream buffer holds at most {N_SAMPLES // SAMPLE_RATE} s, got {len(audio) / SAMPLE_RATE:.1f} s")
        engine = self.model.engine
        # the STFT of the buffer alone (not of a 30-s window, as long-form pads it): the encoder reads only its frames
        # (the rest of the window is zeros), and the floor (8 below the loudest frame) is the same, as every frame
        # with a sample of the buffer is in; the cost follows the buffer, not the window
        mel = engine.log_mel(audio, padding=MEL_PADDING)
        frames = min(N_FRAMES, len(audio) // HOP_LENGTH)
        features = self._encode(pad_or_trim(mel[:, :frames], N_FRAMES), frames)
        if self._tokenizer is None:  # a multilingual model: the language of the first speech holds for the stream
            # the window as long-form pads it: the silent frames past the buffer are all at the floor (the last column)
            self.language, _ = self.model._detect(np.concatenate([mel, np.repeat(mel[:, -1:], max(0, N_FRAMES - mel.shape[1]), axis=1)], axis=1))
            self._tokenizer = self.model.tokenizer(self.language, self.options.task)
            self.transcribe_options = replace(self.transcribe_options, decoding=replace(self.transcribe_options.decoding, language=self.language))
        tokenizer = self._tokenizer
        seconds = len(audio) / SAMPLE_RATE
        # Whisper writes a space before each word of a spaced language only: a forced " 我们" was text it never writes
        space = "" if self.language in UNSPACED_LANGUAGES else " "
        prefix_tokens = tokenizer.encode(space + prefix.strip()) if prefix.strip() else []
        decoding = replace(
            self.transcribe_options.decoding,
            sample_len=min(engine.dims.n_text_ctx // 2, 16 + int(TOKENS_PER_SECOND * seconds)),
            # with committed text forced as the prefix, only the rest is decoded; word times come from alignment
            prefix=tuple(prefix_tokens) or None, without_timestamps=bool(prefix_tokens),
        )
        options = replace(self.transcribe_options, decoding=decoding)
        prompt_tokens = tokenizer.encode(" " + prompt.strip()) if prompt.strip() else None
        result = decode_with_fallback(engine, features, tokenizer, options, prompt_tokens)
        # laughter, music: a decode the model doubts over audio with little speech by the VAD is silence, as offline
        # (its one temperature is all a stream tries: more would make its hypotheses change from step to step)
        if is_silence(result, options) or is_nonspeech(result, options, lambda: audio, single_pass=True):
            return []
        # the committed prefix counts too: offline, a segment's whole text is checked, and a loop forced as the
        # prefix ("啊啊啊啊", committed from a decode too short to show it) would otherwise go on decode after decode
        ratio = max(result.compression_ratio, compression_ratio(prefix + result.text))
        if options.compression_ratio_threshold is not None and ratio > options.compression_ratio_threshold:
            return None  # "and important and important and ...": a loop, not what was said
        if prefix_tokens:
            text_tokens = prefix_tokens + [t for t in result.tokens if t < tokenizer.eot]
            segments = [{"seek": 0, "start": 0.0, "end": seconds, "tokens": text_tokens, "text": tokenizer.decode(text_tokens)}]
        else:
            segments, _, _ = split_at_timestamps(result, tokenizer, 0, frames, TIME_PRECISION, INPUT_STRIDE)
            segments = [s for s in segments if any(t < tokenizer.eot for t in s["tokens"])]
        add_word_timestamps(
            segments=segments, engine=engine, tokenizer=tokenizer, audio_features=features, num_frames=frames,
            alignment_heads=self.model.alignment_heads, prepend_punctuations=options.prepend_punctuations,
            append_punctuations=options.append_punctuations, last_speech_timestamp=0.0,
        )
        words: list[TimedWord] = []
        # the prefix's characters (one segment, at its head), counted without spaces: a Chinese prefix has no spaces
        # between its words, and a word may be several characters
        forced = len("".join(prefix.split())) if prefix_tokens else 0
        for i, segment in enumerate(segments):
            seg_words = segment.get("words") or []
            for j, w in enumerate(seg_words):
                # a forced word is already committed: dropping it for its probability would only break the alignment
                if w["probability"] < self.options.min_word_probability and not (i == 0 and forced > 0):
                    continue
                if i == 0:
                    forced -= len("".join(w["word"].split()))
                # the last segment's end is only where the buffer stops, not where the speaker did
                boundary = j == len(seg_words) - 1 and i < len(segments) - 1
                end = min(w["end"], seconds)
                words.append(TimedWord(w["word"], min(w["start"], end), end, float(w["probability"]), boundary))
        return None if _loops(words) else words


    def _encode(self, window: np.ndarray, frames: int):
        """The window's features: where the engine can and ``encode_margin_s`` is set, of the buffer's encoder frames
        and that margin of the padding after them only (their cost follows the buffer, not the 30-s window)."""
        engine, margin = self.model.engine, self.options.encode_margin_s
        if margin is None or not getattr(engine, "encodes_fewer_frames", False):
            return window_features(engine, window)
        return engine.encode_frames(window[None], min(N_FRAMES, frames + int(round(margin * SAMPLE_RATE / HOP_LENGTH))) // 2)


def _loops(words: list[TimedWord]) -> bool:
    """A word said LOOP_WORDS times in a row, or a run of 2-4 words said LOOP_RUNS times in a row ("回家,回家,回家")."""
    from .agreement import word_key

    keys = [word_key(w.word) for w in words]
    for period in range(1, 5):
        needed = LOOP_WORDS if period == 1 else LOOP_RUNS
        run = 0  # words since the start of the repetition that equal the word one period before
        for i in range(period, len(keys)):
            run = run + 1 if keys[i] == keys[i - period] else 0
            if run >= period * (needed - 1):
                return True
    return False


def _language_for(model, language: str | None) -> str | None:
    from ..tokenizer import normalize_language

    code = normalize_language(language)
    if not model.is_multilingual:
        if code not in (None, "en"):
            from ..errors import OptionError

            raise OptionError(f"{model.name or 'this model'} is English-only; it cannot transcribe {code!r} (use a multilingual model such as base)")
        return "en"
    return code
