"""Clusterings of a dataset's personas: per-cluster stats and per-persona assignments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from storage.errors import NotFoundError
from storage.models import Assignment, Clustering, ClusterStat


@dataclass(frozen=True)
class ClusterStatRow:
    """Size and silhouette of one cluster."""

    cluster_id: int
    n_personas: int
    n_examples: int
    silhouette: float


@dataclass(frozen=True)
class ClusteringInfo:
    """A stored clustering with its per-cluster stats (ordered by cluster id)."""

    id: int
    k: int
    seed: int
    embedding_model: str
    silhouette: float
    stats: tuple[ClusterStatRow, ...]


def save_clustering(
    session: Session,
    *,
    dataset_id: int,
    k: int,
    seed: int,
    embedding_model: str,
    silhouette: float,
    assignments: Mapping[int, tuple[int, float]],
    stats: Sequence[ClusterStatRow],
) -> int:
    """Store a clustering; one with the same (dataset, k, seed, model) is replaced.

    Args:
        session: An open session.
        dataset_id: The clustered dataset.
        k: Number of clusters.
        seed: Random seed of the clustering.
        embedding_model: Name of the model that embedded the personas.
        silhouette: Mean silhouette over all personas.
        assignments: Persona database id -> (cluster id, persona silhouette).
        stats: One row per cluster.

    Returns:
        The clustering id.

    Raises:
        ValueError: If an assignment names a cluster without a stats row.
    """
    known = {s.cluster_id for s in stats}
    unknown = sorted({c for c, _ in assignments.values()} - known)
    if unknown:
        raise ValueError(
            f"assignments name clusters {unknown} that have no stats row "
            f"(stats cover {sorted(known)})"
        )
    clustering = _lookup(session, dataset_id, k, seed, embedding_model)
    if clustering is None:
        clustering = Clustering(
            dataset_id=dataset_id,
            k=k,
            seed=seed,
            embedding_model=embedding_model,
            silhouette=silhouette,
        )
        session.add(clustering)
    else:
        clustering.silhouette = silhouette
        session.execute(delete(ClusterStat).where(ClusterStat.clustering_id == clustering.id))
        session.execute(delete(Assignment).where(Assignment.clustering_id == clustering.id))
    session.flush()
    if stats:
        session.execute(
            insert(ClusterStat),
            [
                {
                    "clustering_id": clustering.id,
                    "cluster_id": s.cluster_id,
                    "n_personas": s.n_personas,
                    "n_examples": s.n_examples,
                    "silhouette": s.silhouette,
                }
                for s in stats
            ],
        )
    if assignments:
        session.execute(
            insert(Assignment),
            [
                {
                    "clustering_id": clustering.id,
                    "persona_id": persona_id,
                    "cluster_id": cluster_id,
                    "silhouette": persona_silhouette,
                }
                for persona_id, (cluster_id, persona_silhouette) in assignments.items()
            ],
        )
    return clustering.id


def _stats(session: Session, clustering_id: int) -> tuple[ClusterStatRow, ...]:
    rows = session.execute(
        select(
            ClusterStat.cluster_id,
            ClusterStat.n_personas,
            ClusterStat.n_examples,
            ClusterStat.silhouette,
        )
        .where(ClusterStat.clustering_id == clustering_id)
        .order_by(ClusterStat.cluster_id)
    )
    return tuple(ClusterStatRow(*row) for row in rows)


def latest_clustering(
    session: Session, dataset_id: int, k: int | None = None
) -> ClusteringInfo | None:
    """Return the most recently created clustering of a dataset, optionally with a given ``k``.

    Args:
        session: An open session.
        dataset_id: The dataset id.
        k: Only consider clusterings with this many clusters.

    Returns:
        The clustering with its stats, or ``None`` if there is none.
    """
    query = select(Clustering).where(Clustering.dataset_id == dataset_id)
    if k is not None:
        query = query.where(Clustering.k == k)
    clustering = session.execute(query.order_by(Clustering.id.desc()).limit(1)).scalar()
    if clustering is None:
        return None
    return _info(session, clustering)


def _info(session: Session, clustering: Clustering) -> ClusteringInfo:
    """A clustering row with its stats, as returned to callers."""
    return ClusteringInfo(
        id=clustering.id,
        k=clustering.k,
        seed=clustering.seed,
        embedding_model=clustering.embedding_model,
        silhouette=clustering.silhouette,
        stats=_stats(session, clustering.id),
    )


def cluster_persona_ids(session: Session, clustering_id: int, cluster_id: int) -> list[int]:
    """Return the database ids of the personas in one cluster, ascending.

    Args:
        session: An open session.
        clustering_id: The clustering id.
        cluster_id: The cluster within it.

    Returns:
        Persona ids (empty for a known cluster without personas).

    Raises:
        StorageError: If the clustering or the cluster id is unknown.
    """
    ids = list(
        session.execute(
            select(Assignment.persona_id)
            .where(Assignment.clustering_id == clustering_id, Assignment.cluster_id == cluster_id)
            .order_by(Assignment.persona_id)
        ).scalars()
    )
    if ids:
        return ids
    if session.get(Clustering, clustering_id) is None:
        raise NotFoundError(f"no clustering with id {clustering_id}")
    valid = [s.cluster_id for s in _stats(session, clustering_id)]
    if cluster_id not in valid:
        raise NotFoundError(
            f"unknown cluster id {cluster_id} in clustering {clustering_id}: "
            f"valid ids are {', '.join(map(str, valid)) or '(none)'}"
        )
    return ids


def _lookup(
    session: Session, dataset_id: int, k: int, seed: int, embedding_model: str
) -> Clustering | None:
    """The clustering row with this unique key, if any."""
    return session.execute(
        select(Clustering).where(
            Clustering.dataset_id == dataset_id,
            Clustering.k == k,
            Clustering.seed == seed,
            Clustering.embedding_model == embedding_model,
        )
    ).scalar_one_or_none()


def find_clustering(
    session: Session, dataset_id: int, *, k: int, seed: int, embedding_model: str
) -> ClusteringInfo | None:
    """Return the clustering of a dataset with exactly this k, seed and embedding model."""
    clustering = _lookup(session, dataset_id, k, seed, embedding_model)
    if clustering is None:
        return None
    return _info(session, clustering)
