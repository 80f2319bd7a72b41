"""The diarization pipeline: speech regions (Silero VAD at 8 kHz), embedding windows, clustering, speaker turns."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import OptionError
from .clustering import DEFAULT_THRESHOLD, centroids, cluster_embeddings
from .encoder import SpeakerEncoder, load_encoder
from .features import HOP
from .timeline import SpeakerTurn, merge_adjacent, region_turns
from .windows import CLOSE_STEP_FRAMES, STEP_FRAMES, WINDOW_FRAMES, EmbeddingWindow, group_spans, iter_window_batches

SAMPLE_RATE = 16000
PROGRESS_MIN_BATCHES = 4  # a progress bar only where embedding takes a few batches (long files)


@dataclass(frozen=True)
class DiarizeSettings:
    """What the pipeline is asked for (from TranscribeOptions) and its tuned constants."""

    num_speakers: int | None = None
    min_speakers: int = 1
    max_speakers: int | None = None
    speaker_names: tuple[str, ...] = ()
    speaker_references: tuple[np.ndarray, ...] = field(default=(), repr=False)  # 16 kHz mono samples, one per name
    threshold: float = DEFAULT_THRESHOLD
    step_frames: int = STEP_FRAMES
    vad_min_silence_ms: int = 300  # shorter pauses stay inside a region (tuned: 100 ms gave many sub-second regions)
    vad_threshold: float = 0.5


@dataclass(frozen=True)
class Diarization:
    turns: tuple[SpeakerTurn, ...]
    speakers: tuple[str, ...]  # in order of first appearance
    regions: tuple[tuple[int, int], ...]  # the VAD's speech, in samples


class Stopped(Exception):
    """The caller's stop event was set: the transcription the turns were for has failed."""


def diarize_samples(samples: np.ndarray, settings: DiarizeSettings = DiarizeSettings(), *, encoder: SpeakerEncoder | None = None,
                    progress: bool = False, cache_dir: str | None = None, stop: threading.Event | None = None, threads: int = 0) -> Diarization:
    """Who speaks when in 16 kHz mono ``samples``. No speech gives no turns and no speakers. Setting ``stop`` ends the
    work between batches of windows (``Stopped``). ``threads`` bounds the VAD's and the encoder's threads (0: one a
    core); the result is the same whatever it is."""
    from .speech import speech_regions

    regions = speech_regions(samples, settings.vad_threshold, settings.vad_min_silence_ms, threads)
    if not regions:
        return Diarization((), (), ())
    encoder = encoder or load_encoder(cache_dir)
    windows, embeddings = embed_windows(encoder, samples, regions, settings.step_frames, progress, stop, threads)
    labels = cluster_embeddings(embeddings, num_speakers=settings.num_speakers, min_speakers=settings.min_speakers,
                                max_speakers=settings.max_speakers, threshold=settings.threshold, regions=np.array([w.region for w in windows]),
                                closer_look=lambda indices: closer_look(encoder, samples, windows, indices, threads),
                                full=np.array([w.end - w.start >= (WINDOW_FRAMES - 1) * HOP for w in windows]))
    names = speaker_labels(labels, windows)
    if settings.speaker_references:
        names = _known_names(names, labels, embeddings, settings, encoder, threads)
    turns = merge_adjacent(region_turns(regions, windows, [names[c] for c in labels]))
    order = list(dict.fromkeys(t.speaker for t in turns))
    return Diarization(tuple(turns), tuple(order), tuple(regions))


def embed_windows(encoder: SpeakerEncoder, samples: np.ndarray, regions: Sequence[tuple[int, int]], step_frames: int = STEP_FRAMES,
                  progress: bool = False, stop: threading.Event | None = None, threads: int = 0) -> tuple[list[EmbeddingWindow], np.ndarray]:
    """The windows laid over ``regions`` and their embeddings (n, 256)."""
    from tqdm import tqdm

    speech_s = sum(e - s for s, e in regions) / SAMPLE_RATE
    windows: list[EmbeddingWindow] = []
    parts: list[np.ndarray] = []
    with tqdm(total=round(speech_s, 1), unit="s", desc="speakers", disable=not progress or speech_s < PROGRESS_MIN_BATCHES * 50,
              leave=False, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of speech [{elapsed}<{remaining}]") as bar:
        done_until = 0
        for batch_windows, batch in iter_window_batches(samples, list(regions), step_frames=step_frames):
            if stop is not None and stop.is_set():
                raise Stopped("speaker diarization stopped")
            windows.extend(batch_windows)
            parts.append(encoder.embed(batch, threads))
            reached = batch_windows[-1].region
            bar.update(round(sum(e - s for s, e in regions[done_until:reached]) / SAMPLE_RATE, 1))
            done_until = reached
        bar.update(max(0.0, bar.total - bar.n))
    return windows, (np.concatenate(parts) if parts else np.zeros((0, 256), np.float32))


def closer_look(encoder: SpeakerEncoder, samples: np.ndarray, windows: list[EmbeddingWindow], indices: np.ndarray, threads: int = 0) -> np.ndarray:
    """The unit-length centre of the windows at ``indices``, embedded again with windows every CLOSE_STEP_FRAMES over
    the speech they cover."""
    return _unit_mean(embed_windows(encoder, samples, group_spans(windows, indices), CLOSE_STEP_FRAMES, threads=threads)[1])


def speaker_labels(labels: np.ndarray, windows: list[EmbeddingWindow]) -> list[str]:
    """SPEAKER_00, SPEAKER_01, ... for the speaker indices, numbered in order of first appearance."""
    first: dict[int, float] = {}
    for label, w in zip(labels.tolist(), windows):
        first.setdefault(label, w.start)
    ranked = sorted(first, key=first.get)
    names = [""] * (int(labels.max()) + 1 if len(labels) else 0)
    for rank, label in enumerate(ranked):
        names[label] = f"SPEAKER_{rank:02d}"
    return names


def reference_embedding(encoder: SpeakerEncoder, samples: np.ndarray, settings: DiarizeSettings = DiarizeSettings(), threads: int = 0) -> np.ndarray:
    """One voice's unit-length embedding: the mean over windows of its speech (all of it when the VAD finds none)."""
    from .speech import speech_regions

    regions = speech_regions(samples, min_silence_ms=settings.vad_min_silence_ms, threads=threads) or [(0, len(samples))]
    return _unit_mean(embed_windows(encoder, samples, regions, settings.step_frames, threads=threads)[1])


def _unit_mean(embeddings: np.ndarray) -> np.ndarray:
    mean = embeddings.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def _known_names(names: list[str], labels: np.ndarray, embeddings: np.ndarray, settings: DiarizeSettings, encoder: SpeakerEncoder,
                 threads: int = 0) -> list[str]:
    """Each cluster named after the reference voice closest to it, each name used once (the closest pairs first);
    clusters left over keep their SPEAKER_nn label."""
    if len(settings.speaker_names) != len(settings.speaker_references):
        raise OptionError(f"{len(settings.speaker_names)} speaker names for {len(settings.speaker_references)} references: give one name per reference")
    refs = np.stack([reference_embedding(encoder, r, settings, threads) for r in settings.speaker_references])
    similarity = centroids(embeddings, labels) @ refs.T
    out = list(names)
    used_clusters: set[int] = set()
    used_refs: set[int] = set()
    for flat in np.argsort(-similarity, axis=None):
        c, r = divmod(int(flat), similarity.shape[1])
        if c in used_clusters or r in used_refs:
            continue
        out[c] = settings.speaker_names[r]
        used_clusters.add(c)
        used_refs.add(r)
    return out
