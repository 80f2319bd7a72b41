"""Grouping window embeddings by voice: average-linkage agglomerative clustering on cosine distance.

With no count given, the tree is cut where the average distance between two groups passes ``threshold`` (tuned on
bench/diarize.py's conversations), then held within [min_speakers, max_speakers].
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.35  # cosine distance between group averages above which two groups are two voices
MIN_WINDOWS = 5  # with the count found automatically, a group of fewer windows (~4 s of speech) joins its nearest


def cluster_embeddings(embeddings: np.ndarray, *, num_speakers: int | None = None, min_speakers: int = 1,
                       max_speakers: int | None = None, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """A speaker index (0..k-1) per row of unit-length ``embeddings``."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(embeddings.astype(np.float64), method="average", metric="cosine")
    if num_speakers is not None:
        labels = fcluster(tree, t=min(num_speakers, n), criterion="maxclust")
    else:
        labels = fcluster(tree, t=threshold, criterion="distance")
        k = len(np.unique(labels))
        bounded = min(max(k, min_speakers), max_speakers if max_speakers is not None else k, n)
        if bounded != k:
            labels = fcluster(tree, t=bounded, criterion="maxclust")
    labels = np.unique(labels, return_inverse=True)[1]
    refined = _refine(embeddings, labels)
    if num_speakers is not None:  # a count that was asked for is kept even where refining would empty a group
        return labels if refined.max() < labels.max() else refined
    return _absorb_small(embeddings, refined, min_speakers)


def _absorb_small(embeddings: np.ndarray, labels: np.ndarray, min_speakers: int) -> np.ndarray:
    """Groups of fewer than MIN_WINDOWS windows moved to the nearest larger group (a cough, a laugh, two voices at
    once), keeping at least ``min_speakers`` groups."""
    sizes = np.bincount(labels)
    keep = np.argsort(-sizes)[: max(int(np.sum(sizes >= MIN_WINDOWS)), min(min_speakers, len(sizes)), 1)]
    if len(keep) == len(sizes):
        return labels
    nearest = keep[np.argmax(embeddings @ centroids(embeddings, labels)[keep].T, axis=1)]
    return np.searchsorted(np.unique(nearest), nearest)


def centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The unit-length mean embedding of each speaker index."""
    k = int(labels.max()) + 1 if len(labels) else 0
    out = np.stack([embeddings[labels == c].mean(axis=0) for c in range(k)]) if k else np.zeros((0, embeddings.shape[1]))
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _refine(embeddings: np.ndarray, labels: np.ndarray, rounds: int = 2) -> np.ndarray:
    """A few k-means rounds from the tree's groups: each window moves to the voice whose centroid is nearest (the
    tree's merge order fixes windows early that fit another group better once it is complete)."""
    for _ in range(rounds):
        moved = np.argmax(embeddings @ centroids(embeddings, labels).T, axis=1)
        kept = np.unique(moved)  # a group that lost every window disappears
        moved = np.searchsorted(kept, moved)
        if np.array_equal(moved, labels):
            break
        labels = moved
    return labels
