"""KMeans clustering of persona embeddings."""

from __future__ import annotations

from typing import Any

import pytest

from trainers.clustering import cluster_embeddings

SIZES = (20, 5, 9)
"""Blob sizes, deliberately not in size order."""


def _blobs(seed: int = 0) -> tuple[Any, list[int]]:
    """Three well-separated unit-normalized blobs in 8 dims; returns (points, true blob)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for blob, size in enumerate(SIZES):
        center = np.zeros(8)
        center[blob] = 1.0
        rows.append(center + 0.05 * rng.standard_normal((size, 8)))
        truth += [blob] * size
    points = np.concatenate(rows)
    return points / np.linalg.norm(points, axis=1, keepdims=True), truth


def test_clusters_are_numbered_by_size_ascending() -> None:
    points, truth = _blobs()
    result = cluster_embeddings(points, 3, seed=0, examples_per_item=[2] * len(truth))
    assert [c.cluster_id for c in result.clusters] == [0, 1, 2]
    assert [c.n_personas for c in result.clusters] == [5, 9, 20]
    assert [c.n_examples for c in result.clusters] == [10, 18, 40]
    # The blobs are recovered exactly: blob 1 (5 points) -> 0, blob 2 (9) -> 1, blob 0 -> 2.
    expected = {1: 0, 2: 1, 0: 2}
    assert list(result.labels) == [expected[b] for b in truth]
    assert result.k == 3 and result.seed == 0


def test_silhouettes_are_consistent() -> None:
    import numpy as np

    points, _ = _blobs()
    result = cluster_embeddings(points, 3)
    samples = np.array(result.sample_silhouette)
    assert len(samples) == len(points)
    assert np.all((samples >= -1) & (samples <= 1))
    assert -1 <= result.silhouette <= 1
    assert result.silhouette == pytest.approx(samples.mean(), abs=1e-9)
    labels = np.array(result.labels)
    for cluster in result.clusters:
        assert -1 <= cluster.silhouette <= 1
        assert cluster.silhouette == pytest.approx(samples[labels == cluster.cluster_id].mean())
    assert result.silhouette > 0.8  # well-separated blobs


def test_clustering_is_deterministic_by_seed() -> None:
    points, _ = _blobs()
    assert cluster_embeddings(points, 4, seed=3) == cluster_embeddings(points, 4, seed=3)


def test_default_example_counts_are_zero() -> None:
    points, _ = _blobs()
    assert all(c.n_examples == 0 for c in cluster_embeddings(points, 3).clusters)


@pytest.mark.parametrize("k", [0, 1, 34, 35])
def test_invalid_k_raises_naming_k(k: int) -> None:
    points, _ = _blobs()
    with pytest.raises(ValueError, match=rf"k={k}\b"):
        cluster_embeddings(points, k)


def _random_unit_rows(n: int = 300, dim: int = 16, seed: int = 1) -> Any:
    """Points without cluster structure, where KMeans restarts end in different optima."""
    import numpy as np

    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize(("k", "seed"), [(3, 0), (5, 7), (8, 2)])
def test_restarts_one_by_one_match_one_scikit_learn_fit(k: int, seed: int) -> None:
    """The restarts run one fit at a time (for the progress bar) and still give exactly the
    partition of scikit-learn's KMeans(n_init=N_INIT) with the same seed."""
    from sklearn.cluster import KMeans

    from trainers.clustering import N_INIT

    points = _random_unit_rows()
    reference = KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit_predict(points)
    labels = cluster_embeddings(points, k, seed=seed).labels
    pairs = set(zip(labels, reference.tolist(), strict=True))
    assert len(pairs) == k  # a one-to-one relabelling: the same partition


def test_progress_bar_counts_the_restarts(capsys: pytest.CaptureFixture[str]) -> None:
    points, _ = _blobs()
    quiet = cluster_embeddings(points, 3)
    assert capsys.readouterr().err == ""
    shown = cluster_embeddings(points, 3, progress=True)
    err = capsys.readouterr().err
    assert "KMeans k=3" in err and "10/10" in err
    assert shown == quiet  # the bar does not change the result
