"""What every decoder of a 30-s window shares, whatever runs the model: the result type, the initial
tokens (prompt, start-of-transcript sequence, prefix), the logit filters and the compressibility check."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from ..audio import CHUNK_LENGTH
from ..options import DecodingOptions
from ..tokenizer import Tokenizer
from .filters import ApplyTimestampRules, LogitFilter, SuppressBlank, SuppressTokens, suppress_token_ids


@dataclass
class DecodingResult:
    """The chosen hypothesis for one window."""

    tokens: list[int]
    text: str
    language: str | None
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    sum_logprob: float = 0.0
    language_probs: dict[str, float] | None = None
    audio_features: Any = field(default=None, repr=False)  # the window's engine features (for word timing)


def compression_ratio(text: str) -> float:
    """gzip-style compressibility of the text: high for repetitive loops."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def initial_tokens(tokenizer: Tokenizer, options: DecodingOptions, n_ctx: int, sample_len: int) -> list[int]:
    """[<|startofprev|> prompt] sot-sequence [<|notimestamps|>] [prefix]."""
    tokens = list(tokenizer.sot_sequence_including_notimestamps if options.without_timestamps else tokenizer.sot_sequence)
    if options.prefix:
        prefix = tokenizer.encode(" " + options.prefix.strip()) if isinstance(options.prefix, str) else list(options.prefix)
        max_prefix_len = n_ctx // 2 - sample_len
        tokens += prefix[-max_prefix_len:] if max_prefix_len > 0 else prefix
    prompt: list[int] = []
    if options.prompt:
        prompt = tokenizer.encode(" " + options.prompt.strip()) if isinstance(options.prompt, str) else list(options.prompt)
    if options.hotwords and not options.prefix:  # as faster-whisper: the hotwords before the previous text
        from .hotwords import hotword_prompt_tokens

        prompt = hotword_prompt_tokens(tokenizer, options.hotwords, prompt, n_ctx // 2 - 1)
    if prompt:
        tokens = [tokenizer.sot_prev] + prompt[-(n_ctx // 2 - 1) :] + tokens
    return tokens


def logit_filters(tokenizer: Tokenizer, options: DecodingOptions, sample_begin: int, n_audio_ctx: int) -> list[LogitFilter]:
    filters: list[LogitFilter] = []
    if options.suppress_blank:
        filters.append(SuppressBlank(tokenizer.encode(" "), tokenizer.eot, sample_begin))
    if options.suppress_tokens:
        specials = [tokenizer.transcribe, tokenizer.translate, tokenizer.sot, tokenizer.sot_prev, tokenizer.sot_lm]
        if tokenizer.no_speech is not None:
            specials.append(tokenizer.no_speech)
        filters.append(SuppressTokens(suppress_token_ids(options.suppress_tokens, tokenizer.non_speech_tokens, specials)))
    if options.hotwords:  # before the timestamp rules, so that their forcing sees the boosted text
        from .hotwords import hotword_filter

        boost = hotword_filter(tokenizer, options.hotwords, options.hotword_boost, sample_begin)
        if boost is not None:
            filters.append(boost)
    if not options.without_timestamps:
        precision = CHUNK_LENGTH / n_audio_ctx  # seconds per timestamp step: 0.02
        max_initial = round(options.max_initial_timestamp / precision) if options.max_initial_timestamp else None
        filters.append(ApplyTimestampRules(tokenizer.timestamp_begin, tokenizer.eot, tokenizer.no_timestamps, sample_begin, max_initial))
    return filters




def until_eot(tokens: list[int], eot: int) -> list[int]:
    return tokens[: tokens.index(eot)] if eot in tokens else tokens


def sample(model: Any, tokens: Any, cache: Any, logits: Any, filters: list[LogitFilter], selector: Any, sample_len: int, n_ctx: int,
           sum_logprobs: Any) -> Any:
    """The token loop: filter the last logits, let the selector
    extend every row (reordering the cache for beams), decode the new tokens; stop when all rows are done.
    A model that can (``decodes_row_subsets``) computes only the rows of windows still decoding in a batch."""
    subsets = getattr(model, "decodes_row_subsets", False)
    for _ in range(sample_len):
        next_logits = logits[:, -1]
        for f in filters:
            f.apply(next_logits, tokens)
        tokens, completed, source_indices = selector.update(tokens, next_logits, sum_logprobs)
        if source_indices is not None:
            cache.reorder(source_indices)
        if completed or tokens.shape[-1] > n_ctx:
            break
        rows = selector.unfinished_rows(tokens) if subsets else None
        logits = model.decode(tokens[:, -1:], cache) if rows is None else model.decode(tokens[:, -1:], cache, rows=rows)
    return tokens


@dataclass(frozen=True)
class WindowBatch:
    """What a decoder knows of its windows besides the sampled tokens, to build their results."""

    n_audio: int
    n_group: int
    sample_begin: int
    languages: list[str | None]
    language_probs: list[dict[str, float] | None]
    no_speech_probs: list[float]


def pick_results(tokenizer: Tokenizer, options: DecodingOptions, batch: WindowBatch, candidates: list[list[list[int]]],
                 scores: list[list[float]], ranking: list[list[float]], features_of: Any) -> list[DecodingResult]:
    """The best candidate of each window (length-normalised ranking) as a DecodingResult."""
    from .selectors import MaximumLikelihoodRanker

    candidates = [[until_eot(t[batch.sample_begin :], tokenizer.eot) for t in group] for group in candidates]
    chosen = MaximumLikelihoodRanker(options.length_penalty).rank(candidates, ranking)
    results = []
    for i in range(batch.n_audio):
        toks, lp = candidates[i][chosen[i]], scores[i][chosen[i]]
        text = tokenizer.decode(toks).strip()
        results.append(DecodingResult(
            tokens=toks, text=text, language=batch.languages[i], avg_logprob=lp / (len(toks) + 1),
            no_speech_prob=batch.no_speech_probs[i * batch.n_group], temperature=options.temperature,
            compression_ratio=compression_ratio(text), sum_logprob=lp, language_probs=batch.language_probs[i],
            audio_features=features_of(i),
        ))
    return results


def window_languages(model: Any, features: Any, tokenizer: Tokenizer, options: DecodingOptions, detect: Any, tokens: Any,
                     language_index: int, n_audio: int) -> tuple[list[str | None], list[dict[str, float] | None]]:
    """Each window's language: the one given, or (multilingual models) the one ``detect`` finds, whose token is then
    written into ``tokens`` at ``language_index``; with the probabilities of every language when detected."""
    if options.language is not None or not model.is_multilingual:
        return [options.language or getattr(tokenizer, "language", None) or "en"] * n_audio, [None] * n_audio
    lang_tokens, language_probs = detect(model, features, tokenizer)
    tokens[:, language_index] = lang_tokens
    return [max(p, key=p.get) for p in language_probs], list(language_probs)
