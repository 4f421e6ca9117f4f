"""Clustering of personas by the embedding of their persona text (KMeans + silhouette)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster's row of the cluster table."""

    cluster_id: int
    n_personas: int
    n_examples: int
    silhouette: float


@dataclass(frozen=True)
class Clustering:
    """KMeans labels with silhouette scores, clusters numbered by size (smallest first)."""

    k: int
    seed: int
    labels: tuple[int, ...]
    sample_silhouette: tuple[float, ...]
    silhouette: float
    clusters: tuple[ClusterSummary, ...]


N_INIT = 10
"""KMeans restarts, the lowest inertia wins (scikit-learn's "auto" would fit k-means++ once;
ten restarts make the clustering steadier across seeds)."""


class ClusteringError(ValueError):
    """A clustering cannot be made as asked (bad input: the message names k and the count)."""


def check_k(k: int, n: int) -> None:
    """Check a number of clusters against the number of personas, before any work is done.

    Raises:
        ClusteringError: Unless 2 <= k < n; the message names k and n.
    """
    if not 2 <= k < n:
        raise ClusteringError(f"invalid k={k}: need 2 <= k < number of personas ({n})")


def cluster_embeddings(
    embeddings: Any,
    k: int,
    *,
    seed: int = 0,
    examples_per_item: Sequence[int] | None = None,
    progress: bool = False,
) -> Clustering:
    """Cluster unit-normalized embeddings with KMeans and score them with the silhouette.

    Clusters are renumbered by size, smallest first (ties by smallest member index), so that
    the numbering is stable across runs and, with k=5, cluster 4 is the largest, as in the
    original research plan.

    Args:
        embeddings: (n, d) array, one row per persona.
        k: Number of clusters, 2 <= k < n.
        seed: KMeans random_state.
        examples_per_item: Example count of each persona, for the table.
        progress: Show a progress bar over the KMeans restarts (on stderr).

    Raises:
        ValueError: If k is out of range.
    """
    import numpy as np
    from sklearn.metrics import silhouette_samples

    n = len(embeddings)
    check_k(k, n)
    raw = _kmeans_labels(embeddings, k, seed=seed, progress=progress)
    order = sorted(range(k), key=lambda c: (int((raw == c).sum()), int(np.argmax(raw == c))))
    relabel = {old: new for new, old in enumerate(order)}
    labels = np.array([relabel[int(c)] for c in raw])
    per_sample = silhouette_samples(embeddings, labels, metric="cosine")
    counts = examples_per_item if examples_per_item is not None else [0] * n
    clusters = tuple(
        ClusterSummary(
            cluster_id=c,
            n_personas=int((labels == c).sum()),
            n_examples=int(sum(counts[int(i)] for i in np.flatnonzero(labels == c))),
            silhouette=float(per_sample[labels == c].mean()),
        )
        for c in range(k)
    )
    return Clustering(
        k=k,
        seed=seed,
        labels=tuple(int(x) for x in labels),
        sample_silhouette=tuple(float(x) for x in per_sample),
        silhouette=float(per_sample.mean()),
        clusters=clusters,
    )


def _kmeans_labels(embeddings: Any, k: int, *, seed: int, progress: bool) -> Any:
    """KMeans labels of the best of ``N_INIT`` restarts, with a progress bar over them.

    KMeans has no progress callback, so the restarts run here one fit at a time (n_init=1)
    and the lowest inertia is kept, as scikit-learn does inside one fit. All fits draw their
    k-means++ seeds from one RandomState in turn, which is how a single ``n_init=N_INIT`` fit
    draws them, so the result does not depend on ``progress``.
    """
    import numpy as np
    from sklearn.cluster import KMeans
    from tqdm.auto import tqdm

    random_state = np.random.RandomState(seed)
    best_labels, best_inertia = None, float("inf")
    for _ in tqdm(range(N_INIT), desc=f"KMeans k={k}", unit="fit", disable=not progress):
        fit = KMeans(n_clusters=k, n_init=1, random_state=random_state).fit(embeddings)
        if fit.inertia_ < best_inertia:
            best_labels, best_inertia = fit.labels_, float(fit.inertia_)
    return best_labels
