"""Whisper on ONNX Runtime: the exported graphs (``export.py``) run with NumPy arrays, no torch import.

The first use of a model exports it (that one time through PyTorch) into
``<cache>/onnx/<name>-<compute>-<key>/``; later processes only map the graphs, which is what makes a
short command-line transcription start in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..engine import next_token_logprobs
from ..errors import CheckpointError, OptionError
from ..weights.checkpoint import ModelDimensions
from .encoder import StagedEncoder, load_encoder
from .layout import DECODER_GRAPH, EXPORT_VERSION, LOGITS_GRAPH
from .logits import Int8Logits, OrtLogits, load_logits
from .native_decoder import load_native_decoder
from .sessions import SessionOptions, machine_is_idle

if TYPE_CHECKING:
    from ..mel import NumpyMelFrontEnd

COMPUTE_TYPES = ("default", "int8")
# the self-attention buffers grow this many positions at a time: a step reads at most this many unused ones, and
# a window's ~100 tokens cost 3-4 copies of the filled part (joining past and new keys in the graph, as before,
# copied them every step)
CAPACITY_STEP = 32
SEQUENCE_CHUNK = 16  # tokens per decoder call for a prompt: a chunk's logits, not the sequence's (a 224-token prompt's peak)
ALIGNMENT_CHUNK = 32  # and for an alignment, whose every logit is used: a window in 2-4 calls (64: ~+15-25 MiB peak, no faster)


@dataclass
class NumpyKVCache:
    """Decoder state for ``length`` tokens per row. The first ``prefix_length`` (the initial tokens, the same
    for every row of a group) are stored once per audio in ``prefix_k/v`` (audio, head, tokens, d_head);
    each row's later tokens in the buffers ``self_k/v`` (batch, head, capacity, d_head), which the decoder
    graph reads whole (the mask hides the unused tail: zeros, so always finite) and which grow
    ``CAPACITY_STEP`` positions at a time. The window's cross K/V per layer (audio, ...) are shared by the
    ``group`` consecutive rows of each audio."""

    self_k: list[np.ndarray]
    self_v: list[np.ndarray]
    cross_k: list[np.ndarray]
    cross_vt: list[np.ndarray]
    prefix_k: list[np.ndarray]
    prefix_v: list[np.ndarray]
    length: int = 0
    prefix_length: int = 0
    group: int = 1
    prompts: dict = field(default_factory=dict)  # the window's prompt calls (WindowFeatures.prompts): shared, not copied
    # the cross keys (in blocks of 16 frames) and values as the compiled step reads them: bfloat16
    cross_kt: list[np.ndarray] | None = None
    cross_vb: list[np.ndarray] | None = None
    step_threads: int | None = None  # the compiled steps' threads over this window (None: the step's own)
    _subset: tuple | None = None  # (audios, their prefix K/V, their cross K/V): made again only when the audios change

    def of_audios(self, audios: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The prefix K/V and cross K/V of only these audios (copies, kept while the same audios are asked for)."""
        key = tuple(audios.tolist())
        if self._subset is None or self._subset[0] != key:
            self._subset = (key, [a[audios] for a in self.prefix_k + self.prefix_v], [a[audios] for a in self.cross_k + self.cross_vt])
        return self._subset[1], self._subset[2]

    @property
    def capacity(self) -> int:
        return self.self_k[0].shape[2]

    def make_room(self, n: int, limit: int) -> None:
        """Buffers of at least ``n`` positions (at most ``limit``), the filled ones copied over."""
        if n <= self.capacity:
            return
        size = min(limit, -(-n // CAPACITY_STEP) * CAPACITY_STEP)
        filled = self.length - self.prefix_length
        for buffers in (self.self_k, self.self_v):
            for i, old in enumerate(buffers):
                grown = np.zeros((old.shape[0], old.shape[1], size, old.shape[3]), old.dtype)
                grown[:, :, :filled] = old[:, :, :filled]
                buffers[i] = grown

    def reorder(self, source_indices: np.ndarray) -> None:
        """Row b continues row ``source_indices[b]`` (beam search; rows stay within their audio's group)."""
        n = self.length - self.prefix_length
        moved = np.flatnonzero(source_indices != np.arange(len(source_indices)))  # rows that continue themselves stay
        if moved.size == 0:
            return
        sources = source_indices[moved]
        for k, v in zip(self.self_k, self.self_v):
            k[moved, :, :n] = k[sources, :, :n]
            v[moved, :, :n] = v[sources, :, :n]


@dataclass(frozen=True)
class WindowFeatures:
    """What the encoder gives a decoder: each layer's cross-attention K (audio, head, frames, d_head) and V, transposed
    (audio, head, d_head, frames)."""

    cross_k: list[np.ndarray]
    cross_vt: list[np.ndarray]
    # the decoder's results for initial tokens already decoded over these features (logits at the selected positions,
    # prefix K/V): a temperature fallback decodes the same prompt over the same window again, ~30 ms for 200 tokens
    prompts: dict = field(default_factory=dict, compare=False, repr=False)
    # the cross keys in the compiled decoder step's layout, made on its first step over these features
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_audio(self) -> int:
        return self.cross_k[0].shape[0]

    def select(self, index: int) -> WindowFeatures:
        return WindowFeatures([k[index : index + 1] for k in self.cross_k], [v[index : index + 1] for v in self.cross_vt])


class OrtWhisper:
    """The encoder and decoder-step sessions of one exported model."""

    runtime = "onnxruntime"

    def __init__(self, folder: Path, threads: int = 0, spin: bool | None = None):
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            self.dims = ModelDimensions(**meta["dims"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"the exported model in {folder} is unreadable ({e}); delete the folder to export it again") from e
        for name, size in (meta.get("files") or {}).items():
            try:
                actual = (folder / name).stat().st_size
            except OSError:
                actual = None
            if actual != size:
                raise CheckpointError(f"the exported model in {folder} is damaged ({name}: {actual} bytes, written as {size})")
        self.folder = folder
        self.alignment_heads = [tuple(h) for h in meta.get("alignment_heads") or []]
        self.compute_type = meta.get("compute_type", "default")
        self.source = Path(meta["source"]) if meta.get("source") else None
        # Threads that spin between kernels make the decoder's many small kernels ~5 % faster on an idle machine, but
        # up to 1.4x slower when another process keeps a core busy: they spin only when the machine is idle as the
        # model loads, and stop spinning as each run returns (the decoder's threads spinning on after a window's last
        # step slowed the next window's encoder from ~150 to ~190 ms). onnxruntime's process-wide shared pool avoids
        # that too, but once it exists every session in the process must use it: not for a library to impose.
        # made on first use (sessions.py): with the compiled kernels doing everything, no graph loads
        plain = SessionOptions(threads, spin)
        # The encoder's stages keep their buffers between windows in one onnxruntime arena (arena=True below): freed and
        # taken again, ~100 MB of activations were page-faulted anew for every window (~15-20 ms of ~160). A batch is
        # decoded after its windows are encoded and an arena kept through that added ~95 MiB to batched peaks: batches
        # get an encoder without one (``embed_audio(keep_buffers=False)``). The decoder's arena measured no faster.
        # The encoder's stages never spin: their kernels are large (no measurable gain, ~100 ms per window either way),
        # and a new session's worker spins for ~0.1-0.2 s after its creation: five of them took the two cores from the
        # log-mel computed right after the model loads (jfk's: ~25 -> ~175 ms)
        still = SessionOptions(threads, False)
        # one after the other: built side by side (on a thread) they took ~20 ms longer on 2 cores, and longer still
        # beside the CLI's thread that decodes the audio meanwhile
        dims = self.dims
        self._encoder_args = (folder, dims.n_audio_layer, dims.n_audio_head, dims.n_audio_state, self.compute_type)
        try:
            self.encoder = load_encoder(*self._encoder_args, SessionOptions(threads, False, arena=True), still, threads)
            self.logits = load_logits(folder, LOGITS_GRAPH, self.compute_type, plain, threads)
            self.native_step = load_native_decoder(folder, self.compute_type, dims.n_text_layer, dims.n_text_head, threads)
            # with the compiled decoder every call is compiled: the graph is made only where asked for (~50 ms, ~20 MiB)
            self._decoder, self._decoder_options, self._decoder_lock = None, plain, threading.Lock()
            if self.native_step is None:
                self._decoder = self._decoder_session()
        except Exception as e:  # onnxruntime raises its own exception types for a damaged graph
            raise CheckpointError(f"the exported model in {folder} does not load ({e}); delete the folder to export it again") from e
        # ONNX Runtime's encoder stages leave ~30-40 MiB in their threads' heaps after each window: given back to the
        # system around it. The bfloat16 encoder keeps its own buffers: trimming only made every window page-fault its
        # freed heap anew (~20k faults, ~35 ms of a 4-window beam-5 run) for a peak 0-6 MiB lower
        self._malloc_trim = _malloc_trim() if isinstance(self.encoder, StagedEncoder) else None
        self._still_options, self._arenaless_encoder, self._threads = still, None, threads
        n = self.dims.n_text_layer
        self._cross_names = [f"cross_k{i}" for i in range(n)] + [f"cross_vt{i}" for i in range(n)]
        self._prefix_names = [f"prefix_k{i}" for i in range(n)] + [f"prefix_v{i}" for i in range(n)]
        self._past_names = [f"past_k{i}" for i in range(n)] + [f"past_v{i}" for i in range(n)]
        self._head_names = [f"heads{i}" for i in range(n)]
        self._no_heads = dict.fromkeys(self._head_names, np.zeros(0, np.int64))  # decoding: no cross-attention scores out
        self._step_outputs = ["hidden"] + [f"new_k{i}" for i in range(n)] + [f"new_v{i}" for i in range(n)]
        # cross_k0's frames axis named (EXPORT_VERSION 21 on): asked for by every streamed encode, read once here
        # (the compiled step takes any number of frames, and so does every graph it is exported beside)
        self._decoder_takes_fewer_frames = self.native_step is not None or any(
            isinstance(arg.shape[2], str) for arg in self.decoder.get_inputs() if arg.name == self._cross_names[0])

    @property
    def decoder(self):
        """The decoder graph's session (made on first use where the compiled step does the decoding)."""
        with self._decoder_lock:
            if self._decoder is None:
                try:
                    self._decoder = self._decoder_session()
                except Exception as e:  # onnxruntime raises its own exception types for a damaged graph
                    raise CheckpointError(f"the exported model in {self.folder} does not load ({e}); delete the folder to export it again") from e
            return self._decoder

    def _decoder_session(self):
        import onnxruntime as ort

        return ort.InferenceSession(str(self.folder / DECODER_GRAPH), self._decoder_options(), providers=["CPUExecutionProvider"])

    @property
    def runs_graphs(self) -> bool:
        """Whether a part of this model runs as ONNX Runtime graphs at load (else every part is a compiled kernel and
        onnxruntime is not imported for decoding at all)."""
        return isinstance(self.encoder, StagedEncoder) or self.native_step is None or isinstance(self.logits, OrtLogits)

    @property
    def is_multilingual(self) -> bool:
        return self.dims.is_multilingual

    @property
    def num_languages(self) -> int:
        return self.dims.num_languages

    @property
    def description(self) -> str:
        return f"onnxruntime {'int8' if self.compute_type == 'int8' else 'float32'} (cpu)"

    def log_mel(self, samples: np.ndarray, padding: int = 0) -> np.ndarray:
        from ..mel import log_mel_spectrogram_numpy

        return log_mel_spectrogram_numpy(samples, self.dims.n_mels, padding=padding)

    def mel_front_end(self) -> NumpyMelFrontEnd:
        """``log_mel`` in blocks, for windows of a long recording (tingxie.mel_source)."""
        from ..mel import NumpyMelFrontEnd

        return NumpyMelFrontEnd(self.dims.n_mels)

    def encode(self, mel: np.ndarray, keep_buffers: bool = True) -> WindowFeatures:
        return self.embed_audio(mel, keep_buffers)

    @property
    def encodes_fewer_frames(self) -> bool:
        """Whether ``encode_frames`` can encode part of a window (graphs with a named frames axis, EXPORT_VERSION 21)."""
        return self.encoder.takes_fewer_frames and self._decoder_takes_fewer_frames

    def encode_frames(self, mel: np.ndarray, frames: int) -> WindowFeatures:
        """One window (1, n_mels, 3000) -> the features of its first ``frames`` encoder frames only, their attention
        over those alone (whisper.cpp's audio_ctx: a streaming buffer's cost follows its length, not the window's)."""
        if self._malloc_trim is not None:
            self._malloc_trim(0)
        out = self.encoder.run(np.ascontiguousarray(mel, dtype=np.float32), frames if self.encodes_fewer_frames else None)
        n = self.dims.n_text_layer
        return WindowFeatures(out[:n], out[n:])

    def alignment_scores(self, tokens: np.ndarray, features: WindowFeatures, heads: list[tuple[int, int]],
                         text_vocab: int) -> tuple[np.ndarray, np.ndarray]:
        """Each next token's log-probability and the given heads' pre-softmax cross-attention scores (heads, T, frames)
        for one whole sequence over one window: the decoder graph with its ``heads{layer}`` inputs filled, a chunk of
        tokens at a time (only a chunk's logits, not (T, vocab), are ever held). The scores come out in layer order;
        rows are put back in the caller's order."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        t = tokens.shape[-1]
        one = features.select(0)
        if self.native_step is not None:
            return self._native_alignment(tokens[:1], features, one, heads, text_vocab)
        by_layer = sorted(range(len(heads)), key=lambda i: heads[i])
        per_layer = [np.asarray([h for layer, h in sorted(heads) if layer == i], np.int64) for i in range(self.dims.n_text_layer)]
        logprobs, scores = [], []
        for start, logits, _, _, chunk_scores in self._in_chunks(tokens, one.cross_k + one.cross_vt, np.arange(t), per_layer,
                                                                 ALIGNMENT_CHUNK):
            targets = tokens[0, start + 1 : start + logits.shape[1] + 1]  # the last token has none
            logprobs.append(next_token_logprobs(logits[0, : len(targets)], targets, text_vocab))
            scores.append(chunk_scores)
        return np.concatenate(logprobs), np.concatenate(scores, axis=1)[np.argsort(by_layer)]

    def _in_chunks(self, tokens: np.ndarray, cross: list[np.ndarray], select: np.ndarray, heads: list[np.ndarray] | None = None,
                   chunk: int = SEQUENCE_CHUNK):
        """A sequence from its start (one row per audio), ``chunk`` tokens per decoder call, each chunk
        attending to the earlier ones as a shared prefix: a long prompt's or alignment's attention scores and logits
        are a chunk's at a time (a 224-token prompt in one call was the long-form peak). Yields (chunk start, logits
        at the chunk's ``select`` positions, the keys and values so far per layer, the heads' scores or None)."""
        dims = self.dims
        n, d_head = dims.n_text_layer, dims.n_text_state // dims.n_text_head
        audios, t = tokens.shape
        keys = [np.zeros((audios, dims.n_text_head, 0, d_head), np.float32) for _ in range(n)]
        values = list(keys)
        feeds = dict(zip(self._cross_names, cross))
        feeds.update(zip(self._past_names, [keys[0]] * (2 * n)))
        feeds.update(self._no_heads if heads is None else zip(self._head_names, heads))
        outputs = self._step_outputs if heads is None else [*self._step_outputs, "cross_scores"]
        for start in range(0, t, chunk):
            part = tokens[:, start : start + chunk]
            c = part.shape[-1]
            chosen = select[(select >= start) & (select < start + c)] - start
            feeds.update(zip(self._prefix_names, keys + values))
            feeds.update(tokens=part, positions=np.arange(start, start + c, dtype=np.int64), select=chosen.astype(np.int64),
                         mask=np.triu(np.full((c, c), -np.inf, np.float32), k=1))
            hidden, *new = self.decoder.run(outputs, feeds)
            logits = self.logits(hidden)
            keys = [np.concatenate([a, b], axis=2) for a, b in zip(keys, new[:n])]
            values = [np.concatenate([a, b], axis=2) for a, b in zip(values, new[n : 2 * n])]
            yield start, logits, keys, values, (new[2 * n] if heads is not None else None)

    def embed_audio(self, mel: np.ndarray, keep_buffers: bool = True) -> WindowFeatures:
        """mel (audio, n_mels, 3000) float32 -> each decoder layer's cross K/V. ``keep_buffers=False``: the windows of
        a batch, decoded after all are encoded: one at a time (bounding the attention's memory) through an encoder
        that returns its buffers after each run."""
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        n = self.dims.n_text_layer
        if not keep_buffers:
            # no malloc_trim between a batch's windows: each window, and the batch's decoding after them, then
            # page-faulted all their buffers anew (batched greedy on the long-form set 4.0-4.4 -> 3.3-3.6 s, +20 MiB)
            parts = [self._encoder_without_arena().run(mel[i : i + 1]) for i in range(mel.shape[0])]
            out = [np.concatenate(arrays) for arrays in zip(*parts)] if len(parts) > 1 else parts[0]
            return WindowFeatures(out[:n], out[n:])
        if self._malloc_trim is not None:
            # freed heap pages (the log-mel's and the last window's buffers) go back to the system before the
            # encoder's large buffers are taken: a 10-30 MiB lower peak with onnxruntime's stages, no slower
            self._malloc_trim(0)
        out = self.encoder.run(mel)
        if self._malloc_trim is not None:  # and the stages' own (~30-40 MiB in their threads' heaps) before decoding
            self._malloc_trim(0)
        return WindowFeatures(out[:n], out[n:])

    def _encoder_without_arena(self):
        if self._arenaless_encoder is None and not isinstance(self.encoder, StagedEncoder):
            self._arenaless_encoder = self.encoder  # the bfloat16 encoder has no onnxruntime arena
        if self._arenaless_encoder is None:
            self._arenaless_encoder = StagedEncoder(*self._encoder_args, self._still_options, self._still_options, self._threads)
        return self._arenaless_encoder

    def new_cache(self, features: WindowFeatures, repeat: int = 1) -> NumpyKVCache:
        dims = self.dims
        d_head = dims.n_text_state // dims.n_text_head
        shape = (features.n_audio * repeat, dims.n_text_head, 0, d_head)  # no positions yet: they come with make_room
        layers = range(dims.n_text_layer)
        empty = np.zeros((features.n_audio, dims.n_text_head, 0, d_head), np.float32)
        cache = NumpyKVCache([np.zeros(shape, np.float32) for _ in layers], [np.zeros(shape, np.float32) for _ in layers],
                             features.cross_k, features.cross_vt, [empty] * len(layers), [empty] * len(layers), group=repeat,
                             prompts=features.prompts)
        if self.native_step is not None:
            cache.cross_kt, cache.cross_vb = self._cross_bf16(features)
            # a step is a few passes over ~40 MB and ~30 barriers: with another process on a core, waiting at them for a
            # thread without one made 2 threads ~2.7x slower than 1 (on an idle 2-core guest 2 take ~0.6x the time of 1)
            if not self._threads and not machine_is_idle(reads=1):
                cache.step_threads = 1
        return cache

    decodes_row_subsets = True

    @property
    def drafts_exactly(self) -> bool:
        """The compiled call takes a row's tokens one after another in the same arithmetic (the graph's products differ
        by rounding)."""
        return self.native_step is not None

    def decode(self, tokens: np.ndarray, cache: NumpyKVCache, select: list[int] | None = None, rows: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Logits (batch, new tokens, vocab) for ``tokens`` appended after the cached ones; advances the cache.
        ``select``: only these of the new tokens' positions (batch, len(select), vocab). ``rows``: only the audios of
        these rows are computed (the windows of a batch still decoding); the other rows' logits are zeros and their
        cache is not advanced.

        The first call's tokens become the shared prefix when every row of a group has the same ones
        (the initial tokens of a window): they are decoded once per audio, not once per beam.
        """
        offset, t = cache.length, tokens.shape[-1]
        if offset + t > self.dims.n_text_ctx:
            raise ValueError(f"decoder context is {self.dims.n_text_ctx} tokens, asked for {offset + t}")
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        select_ = np.arange(t, dtype=np.int64) if select is None else np.asarray(select, dtype=np.int64) % t
        g = cache.group
        if offset == 0 and (g == 1 or (tokens.reshape(-1, g, t) == tokens[::g, None]).all()):
            n = self.dims.n_text_layer
            key = (tokens[::g].shape, tokens[::g].tobytes(), select_.tobytes())
            if key not in cache.prompts and cache.cross_kt is not None:  # the compiled call: one for the whole prompt
                cache.prompts[key] = self._native_prompt(tokens[::g], cache, select_)
            if key not in cache.prompts:
                order = np.argsort(select_, kind="stable")  # the chunks give the selected positions in order
                parts = list(self._in_chunks(tokens[::g], cache.cross_k + cache.cross_vt, select_[order]))
                joined = np.concatenate([part[1] for part in parts], axis=1)
                logits = np.empty_like(joined)
                logits[:, order] = joined
                cache.prompts[key] = (logits, parts[-1][2], parts[-1][3])
            logits, cache.prefix_k, cache.prefix_v = cache.prompts[key]  # read only: a later call appends, never writes
            cache.length = cache.prefix_length = t
            return np.repeat(logits, g, axis=0)  # a copy: the logit filters edit it in place
        past = offset - cache.prefix_length
        n = self.dims.n_text_layer
        audios = None if rows is None else np.unique(np.asarray(rows) // g)
        if audios is not None and audios.size == tokens.shape[0] // g:
            audios = None  # every audio is still decoding
        computed = slice(None) if audios is None else (audios[:, None] * g + np.arange(g)).ravel()
        if cache.cross_kt is not None:  # a step, a draft's tokens (several per row), a batch's open windows: the compiled call
            cache.make_room(past + t, self.dims.n_text_ctx)
            # a plain step's logits come out of the same compiled call where the logits are the int8 kernel's
            fused = self.logits if select is None and isinstance(self.logits, Int8Logits) else None
            out = self.native_step.step(tokens[computed], offset, cache.self_k, cache.self_v, past, cache.prefix_k, cache.prefix_v,
                                        cache.cross_kt, cache.cross_vb, g, threads=cache.step_threads, vocabulary=fused,
                                        cache_rows=None if audios is None else computed)
            cache.length = offset + t
            logits = out if fused is not None else self.logits(out if select is None else out[:, select_])
            if audios is None:
                return logits
            full = np.zeros((tokens.shape[0], *logits.shape[1:]), logits.dtype)  # the ended windows' rows: zeros
            full[computed] = logits
            return full
        logits, *new = self._run(tokens[computed], offset, cache, past, select_, audios, computed)
        if audios is not None:  # the other rows' logits: zeros
            part, logits = logits, np.zeros((tokens.shape[0], *logits.shape[1:]), logits.dtype)
            logits[computed] = part
        cache.make_room(past + t, self.dims.n_text_ctx)
        for layer in range(n):
            cache.self_k[layer][computed, :, past : past + t] = new[layer]
            cache.self_v[layer][computed, :, past : past + t] = new[n + layer]
        cache.length = offset + t
        return logits

    def _native_alignment(self, tokens: np.ndarray, features: WindowFeatures, one: WindowFeatures, heads: list[tuple[int, int]],
                          text_vocab: int) -> tuple[np.ndarray, np.ndarray]:
        """``alignment_scores`` through the compiled step: the whole sequence in one call, its logits a chunk at a time."""
        dims = self.dims
        t, d_head = tokens.shape[-1], dims.n_text_state // dims.n_text_head
        if "cross_bf16" in features.derived:  # made by a decode over these features: audio 0's part (``one``)
            cross_kt, cross_vb = ([a[:1] for a in arrays] for arrays in features.derived["cross_bf16"])
        else:
            cross_kt, cross_vb = self._cross_bf16(one)
        shape = (1, dims.n_text_head, t, d_head)
        keys = [np.zeros(shape, np.float32) for _ in range(dims.n_text_layer)]
        values = [np.zeros(shape, np.float32) for _ in range(dims.n_text_layer)]
        none = [np.zeros((1, dims.n_text_head, 0, d_head), np.float32)] * dims.n_text_layer
        hidden, scores = self.native_step.step(tokens, 0, keys, values, 0, none, none, cross_kt, cross_vb, 1, heads=list(heads))
        logprobs = []
        for start in range(0, t - 1, ALIGNMENT_CHUNK):
            targets = tokens[0, start + 1 : start + ALIGNMENT_CHUNK + 1]
            logprobs.append(next_token_logprobs(self.logits(hidden[0, start : start + len(targets)]), targets, text_vocab))
        return (np.concatenate(logprobs) if logprobs else np.zeros(0, np.float32)), scores

    def _cross_bf16(self, features: WindowFeatures) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The window's cross keys and values in the compiled step's bfloat16 layout, made once per features."""
        if "cross_bf16" not in features.derived:
            features.derived["cross_bf16"] = self.native_step.cross_bf16(features.cross_k, features.cross_vt)
        return features.derived["cross_bf16"]

    def _native_prompt(self, prompt: np.ndarray, cache: NumpyKVCache, select: np.ndarray) -> tuple:
        """A window's initial tokens (a row per audio) through the compiled step: (logits at ``select``, the prompt's
        keys and values per layer, (audio, head, tokens, d_head))."""
        dims = self.dims
        audios, t = prompt.shape
        d_head = dims.n_text_state // dims.n_text_head
        shape = (audios, dims.n_text_head, t, d_head)
        keys = [np.zeros(shape, np.float32) for _ in range(dims.n_text_layer)]
        values = [np.zeros(shape, np.float32) for _ in range(dims.n_text_layer)]
        none = [np.zeros((audios, dims.n_text_head, 0, d_head), np.float32)] * dims.n_text_layer
        hidden = self.native_step.step(prompt, 0, keys, values, 0, none, none, cache.cross_kt, cache.cross_vb, 1)
        return self.logits(hidden[:, select]), keys, values

    def _run(self, tokens: np.ndarray, offset: int, cache: NumpyKVCache, past: int, select: np.ndarray,
             audios: np.ndarray | None = None, rows: slice | np.ndarray = slice(None)) -> list[np.ndarray]:
        """One decoder call for ``tokens`` of the cache's ``rows`` (those of ``audios``; None: every audio)."""
        t, capacity = tokens.shape[-1], cache.capacity if past else 0
        mask = np.zeros((t, capacity + t), np.float32)
        mask[:, past:capacity] = -np.inf  # the buffer's unused tail
        if t > 1:  # token i sees the prefix, the row's cached tokens and the new tokens up to itself
            mask[:, capacity:] = np.triu(np.full((t, t), -np.inf, np.float32), k=1)
        feeds = {"tokens": tokens, "positions": np.arange(offset, offset + t, dtype=np.int64), "mask": mask, "select": select}
        if audios is None:
            prefix, cross = cache.prefix_k + cache.prefix_v, cache.cross_k + cache.cross_vt
            rows = slice(0, tokens.shape[0])  # the prompt call of a shared prefix has one row per audio
        else:
            prefix, cross = cache.of_audios(audios)
        feeds.update(zip(self._prefix_names, prefix))
        # the whole buffers (contiguous: no copy) once a row has tokens of its own; before that, none of them
        own = [k[rows, :, :capacity] for k in cache.self_k] + [v[rows, :, :capacity] for v in cache.self_v]
        feeds.update(zip(self._past_names, own))
        feeds.update(zip(self._cross_names, cross))
        feeds.update(self._no_heads)
        hidden, *new = self.decoder.run(self._step_outputs, feeds)
        return [self.logits(hidden), *new]


def _malloc_trim():
    """glibc's ``malloc_trim`` (Linux), or None where the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim  # the symbols already loaded into the process
    except (OSError, AttributeError):  # musl and other C libraries
        return None


def export_folder(name_or_path: str | Path, compute_type: str, cache_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Where the exported graphs of this model and compute type live (keyed by the source file's path, size and time)."""
    from ..weights import OFFICIAL_MODELS, resolve_model
    from ..weights.cache import resolve_cache_dir

    source = resolve_model(name_or_path, cache_dir=cache_dir, download=download)
    file = source / "model.bin" if source.is_dir() and (source / "model.bin").is_file() else source
    stat = file.stat() if file.is_file() else source.stat()
    key = f"{EXPORT_VERSION}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{compute_type}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    label = str(name_or_path) if str(name_or_path) in OFFICIAL_MODELS else Path(source).name
    return resolve_cache_dir(cache_dir) / "onnx" / f"{label}-{compute_type}-{digest}"


def load_ort_model(name_or_path: str | Path, compute_type: str = "int8", *, cache_dir: str | os.PathLike | None = None,
                   download: bool = True, threads: int = 0) -> OrtWhisper:
    """The ONNX Runtime model. When the cache does not hold it yet, it is made once: from the package's weight-free
    graphs with the checkpoint's weights bound in (no PyTorch), or, for an architecture the package has no graphs
    for, exported through PyTorch."""
    if compute_type not in COMPUTE_TYPES:
        raise OptionError(f"the onnxruntime backend computes in {' or '.join(COMPUTE_TYPES)}, not {compute_type!r}")
    folder = export_folder(name_or_path, compute_type, cache_dir, download)
    if (folder / "meta.json").is_file():
        try:
            return OrtWhisper(folder, threads)
        except CheckpointError as e:  # a damaged export (disk full, killed mid-write by hand) is made again
            print(f"tingxie: {e}; exporting again", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
    try:
        _make_graphs(name_or_path, folder, compute_type, cache_dir, download)
    except OSError as e:
        from ..weights.cache import CacheWriteError, describe_write_error, is_disk_error

        if not is_disk_error(e):
            raise
        raise CacheWriteError(f"cannot write the model's ONNX graphs into {folder.parent}: {describe_write_error(e)} "
                              "(choose another folder with --model_dir)") from e
    return OrtWhisper(folder, threads)


def _make_graphs(name_or_path: str | Path, folder: Path, compute_type: str, cache_dir: str | os.PathLike | None, download: bool) -> None:
    """The model's graphs into ``folder``: the package's weight-free graphs bound to the checkpoint, or exported."""
    from .finish import bind_model

    if bind_model(name_or_path, folder, compute_type, EXPORT_VERSION, cache_dir=cache_dir, download=download):
        return
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise CheckpointError(f"the package has no ONNX graphs for the architecture of {name_or_path}, and exporting them "
                              "needs PyTorch: pip install 'tingxie-asr[torch]'")
    from .export import export_model

    print(f"tingxie: exporting {name_or_path} to ONNX ({compute_type}) once, into {folder}", file=sys.stderr)
    export_model(name_or_path, folder, compute_type, cache_dir=cache_dir, download=download)
