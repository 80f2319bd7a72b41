"""Grouping window embeddings by voice: average-linkage agglomerative clustering on cosine distance.

With no count given, the tree is cut where the average distance between two groups passes ``threshold`` (tuned on
bench/diarize.py's conversations), held within [min_speakers, max_speakers], and then checked twice: a small group
joins its nearest voice unless its centre, looked at again more closely (``closer_look``: denser windows over its
speech), is far from every larger group's, and a group whose two halves never share a stretch of
speech (``regions``) is split in two, since one voice's windows interleave within its turns where two voices' do not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_THRESHOLD = 0.35  # cosine distance between group averages above which two groups are two voices
MIN_WINDOWS = 5  # with the count found automatically, a group of fewer windows (~4 s of speech) joins its nearest...
FAR_DISTANCE = 0.27  # ...unless its centre is this far from every larger group's (stray pairs of a voice <= 0.25, new voices >= 0.29 on dev/tune/tune2)
MIN_FAR_WINDOWS = 2  # a far group of one window alone (a laugh, a cough; one voice's lone windows lie up to 0.42 away) still joins its nearest
SPLIT_MIN_WINDOWS = 6  # a group is split only into two halves of at least this many windows each,
SPLIT_DISTANCE = 0.15  # whose centres lie at least this far apart,
SPLIT_MAX_SHARED = 0.1  # and which are next to each other in at most this share of their neighbouring windows


def cluster_embeddings(embeddings: np.ndarray, *, num_speakers: int | None = None, min_speakers: int = 1,
                       max_speakers: int | None = None, threshold: float = DEFAULT_THRESHOLD,
                       regions: np.ndarray | None = None, closer_look: Callable[[np.ndarray], np.ndarray] | None = None,
                       full: np.ndarray | None = None) -> np.ndarray:
    """A speaker index (0..k-1) per row of unit-length ``embeddings``; ``regions`` (the speech region of each window,
    in time order) enables the split check of a found count; ``closer_look(indices)`` gives a small group's unit-length
    centre from a closer look at its windows' speech (without it, their mean); ``full`` marks the windows that hold a
    whole window of speech (not a short stretch repeated to fill one; all of them when not given)."""
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
    labels = _absorb_small(embeddings, refined, min_speakers, closer_look, np.ones(n, bool) if full is None else np.asarray(full, bool))
    if regions is not None and len(regions) == n:
        labels = _split_apart(embeddings, labels, np.asarray(regions), max_speakers)
    return labels


def _absorb_small(embeddings: np.ndarray, labels: np.ndarray, min_speakers: int,
                  closer_look: Callable[[np.ndarray], np.ndarray] | None, full: np.ndarray) -> np.ndarray:
    """Groups of fewer than MIN_WINDOWS windows moved to the nearest larger group (a cough, a laugh, two voices at
    once, a voice's stray windows), keeping at least ``min_speakers`` groups; small groups far from every larger one
    are a voice that spoke little: they join each other where close, and stay when they hold MIN_FAR_WINDOWS, one of
    them a whole window of speech (a voice's stray fragments, each shorter than a window, lie up to 0.31 from it)."""
    sizes = np.bincount(labels)
    keep = np.argsort(-sizes)[: max(int(np.sum(sizes >= MIN_WINDOWS)), min(min_speakers, len(sizes)), 1)]
    if len(keep) == len(sizes):
        return labels
    centres = centroids(embeddings, labels)
    small = [c for c in range(len(sizes)) if c not in set(keep.tolist())]
    if closer_look is not None:
        for c in small:
            centres[c] = closer_look(np.flatnonzero(labels == c))
    far = [c for c in small if float(np.min(1 - centres[keep] @ centres[c])) >= FAR_DISTANCE]
    target = {c: int(keep[np.argmax(centres[keep] @ centres[c])]) for c in small}
    for i, c in enumerate(far):  # a far group joins an earlier far group within the clustering's own reach
        for other in far[:i]:
            if 1 - float(centres[c] @ centres[other]) < DEFAULT_THRESHOLD and target.get(other) == other:
                target[c] = other
                break
        else:
            target[c] = c
    for c in far:
        joined = np.isin(labels, [o for o in far if target[o] == c])
        if target[c] == c and (int(np.sum(joined)) < MIN_FAR_WINDOWS or not bool(np.any(full[joined]))):
            for o in far:
                if target[o] == c:
                    target[o] = int(keep[np.argmax(centres[keep] @ centres[o])])
    moved = np.array([target.get(int(c), int(c)) for c in labels])
    return np.unique(moved, return_inverse=True)[1]


def _split_apart(embeddings: np.ndarray, labels: np.ndarray, regions: np.ndarray, max_speakers: int | None) -> np.ndarray:
    """Each group split in two where its best two halves are apart in voice and never side by side in one region."""
    from scipy.cluster.hierarchy import fcluster, linkage

    out = labels.copy()
    for c in range(int(labels.max()) + 1):
        if max_speakers is not None and int(out.max()) + 1 >= max_speakers:
            break
        members = np.flatnonzero(labels == c)
        if len(members) < 2 * SPLIT_MIN_WINDOWS:
            continue
        group = embeddings[members]
        halves = fcluster(linkage(group.astype(np.float64), method="average", metric="cosine"), t=2, criterion="maxclust") - 1
        halves = _refine(group, halves, rounds=3)
        if halves.max() != 1 or min(np.bincount(halves)) < SPLIT_MIN_WINDOWS:
            continue
        centres = centroids(group, halves)
        if 1 - float(centres[0] @ centres[1]) < SPLIT_DISTANCE or _shared_share(members, halves, regions) > SPLIT_MAX_SHARED:
            continue
        out[members[halves == 1]] = int(out.max()) + 1
    return out


def _shared_share(members: np.ndarray, halves: np.ndarray, regions: np.ndarray) -> float:
    """Of the neighbouring window pairs (same region, consecutive) that touch the smaller-touching half, the share
    that joins the two halves; 1 where either half has fewer than 3 such pairs (too little to tell)."""
    half = np.full(len(regions), -1)
    half[members] = halves
    a, b = half[:-1], half[1:]
    inside = (regions[:-1] == regions[1:]) & ((a >= 0) | (b >= 0))
    across = int(np.sum(inside & (a >= 0) & (b >= 0) & (a != b)))
    touching = [int(np.sum(inside & ((a == h) | (b == h)))) for h in (0, 1)]
    return 1.0 if min(touching) < 3 else across / min(touching)


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
