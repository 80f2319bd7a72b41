"""Training examples: audio in memory, log-mel windows as the decoder sees them, and token targets.

A target is Whisper's prompt (``<|startoftranscript|>``, the language and task tokens, and
``<|notimestamps|>`` or a ``<|0.00|>`` timestamp) followed by the text tokens and ``<|endoftext|>``;
the loss is taken on the text, the closing timestamp and end-of-text only, never on the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import N_FRAMES, N_SAMPLES, SAMPLE_RATE, decode_audio, pad_or_trim
from ..errors import AudioDecodeError, OptionError
from ..mel import log_mel_spectrogram
from ..tokenizer import Tokenizer

# Labels of positions that carry no loss (the prompt and the padding).
IGNORE = -100
# Seconds per timestamp token.
TIME_PRECISION = 0.02
MAX_SECONDS = N_FRAMES / 100


@dataclass(frozen=True)
class Example:
    audio: np.ndarray  # 16-kHz float32 samples
    text: str
    tokens: tuple[int, ...]  # prompt + text (+ timestamps) + eot
    prompt_length: int  # positions that are prompt, not predicted


def target_tokens(tokenizer: Tokenizer, text: str, seconds: float, timestamps: bool) -> tuple[list[int], int]:
    """The full token sequence for one utterance and how many of its first tokens are the prompt."""
    prompt = list(tokenizer.sot_sequence if timestamps else tokenizer.sot_sequence_including_notimestamps)
    body = tokenizer.encode(" " + text.strip())
    if timestamps:
        end = min(round(seconds / TIME_PRECISION), 1500)
        body = [tokenizer.timestamp_begin] + body + [tokenizer.timestamp_begin + end]
    return prompt + body + [tokenizer.eot], len(prompt)


def read_examples(rows: list[tuple[str, str]], tokenizer: Tokenizer, n_text_ctx: int, timestamps: bool, *, progress: bool = True) -> list[Example]:
    """Decode every (audio path, text) pair once; too long audio or text is a clear error."""
    from tqdm import tqdm

    examples = []
    for path, text in tqdm(rows, desc="loading audio", unit="utt", disable=not progress, leave=False):
        try:
            samples = decode_audio(path)
        except AudioDecodeError as e:
            raise OptionError(f"training audio {path}: {e}") from e
        seconds = samples.size / SAMPLE_RATE
        if seconds > MAX_SECONDS:
            raise OptionError(f"training audio {path} is {seconds:.1f} s long; fine-tuning takes utterances of at most {MAX_SECONDS:.0f} s")
        if not text.strip():
            raise OptionError(f"training utterance {path} has an empty text")
        tokens, prompt_length = target_tokens(tokenizer, text, seconds, timestamps)
        if len(tokens) > n_text_ctx:
            raise OptionError(f"the text of {path} is {len(tokens)} tokens; the decoder holds {n_text_ctx}")
        examples.append(Example(samples, text, tuple(tokens), prompt_length))
    if not examples:
        raise OptionError("the training manifest holds no utterances")
    return examples


def spec_augment(mel: torch.Tensor, content: int, generator: torch.Generator, *, freq_masks: int, freq_width: int,
                 time_masks: int, time_width: float) -> torch.Tensor:
    """Mask random mel bands and time spans of the first ``content`` frames with the utterance's mean."""
    mel = mel.clone()
    fill = mel[:, :content].mean()
    n_mels = mel.shape[0]
    for _ in range(freq_masks):
        width = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(1, n_mels - width), (1,), generator=generator))
        mel[start : start + width, :content] = fill
    longest = int(time_width * content)
    for _ in range(time_masks):
        width = int(torch.randint(0, longest + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(1, content - width), (1,), generator=generator))
        mel[:, start : start + width] = fill
    return mel


def window_mel(samples: np.ndarray, n_mels: int) -> tuple[torch.Tensor, int]:
    """The 30-s log-mel window the decoder sees for this audio (as transcription computes it) and its content frames."""
    mel = log_mel_spectrogram(samples, n_mels, padding=N_SAMPLES)  # the reference's front end, as the torch engine computes it
    content = mel.shape[-1] - N_FRAMES
    return pad_or_trim(mel[:, :N_FRAMES], N_FRAMES), min(content, N_FRAMES)


def collate(examples: list[Example], n_mels: int, eot: int, generator: torch.Generator | None, augment: dict | None) -> dict[str, torch.Tensor]:
    """A batch: mels (B, n_mels, 3000), input tokens (B, T) and labels (B, T) with IGNORE where no loss is taken."""
    mels = []
    for example in examples:
        mel, content = window_mel(example.audio, n_mels)
        if augment is not None and generator is not None:
            mel = spec_augment(mel, content, generator, **augment)
        mels.append(mel)
    return {"mel": torch.stack(mels), **collate_tokens(examples, eot)}


def collate_tokens(examples: list[Example], eot: int) -> dict[str, torch.Tensor]:
    """Input tokens (B, T), padded with end-of-text, and labels (B, T) with IGNORE on the prompt and the padding."""
    length = max(len(e.tokens) for e in examples) - 1
    inputs = torch.full((len(examples), length), eot, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    for i, example in enumerate(examples):
        tokens = torch.tensor(example.tokens, dtype=torch.long)
        inputs[i, : tokens.numel() - 1] = tokens[:-1]
        labels[i, example.prompt_length - 1 : tokens.numel() - 1] = tokens[example.prompt_length :]
    return {"tokens": inputs, "labels": labels}


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of epoch ``epoch``: a pure function of the seed, so a resume sees the same order."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def resolve_rows(manifest: Path) -> list[tuple[str, str]]:
    """(audio path, text) pairs of a manifest, read by the evaluation module's reader."""
    from ..evaluate import read_manifest

    return [(str(row.audio), row.text) for row in read_manifest(manifest)]
