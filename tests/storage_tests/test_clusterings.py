from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage import (
    ClusterStatRow,
    StorageError,
    cluster_persona_ids,
    latest_clustering,
    load_personas,
    save_clustering,
    session_scope,
)
from storage.models import Assignment


def test_save_replace_and_query(engine: sa.Engine, dataset_id: int) -> None:
    with session_scope(engine) as session:
        ids = [p.id for p in load_personas(session, dataset_id)]
        first = save_clustering(
            session,
            dataset_id=dataset_id,
            k=2,
            seed=0,
            embedding_model="m",
            silhouette=0.5,
            assignments={ids[0]: (0, 0.4), ids[1]: (1, 0.6), ids[2]: (1, 0.5)},
            stats=[ClusterStatRow(0, 1, 4, 0.4), ClusterStatRow(1, 2, 8, 0.55)],
        )
    with session_scope(engine) as session:
        again = save_clustering(
            session,
            dataset_id=dataset_id,
            k=2,
            seed=0,
            embedding_model="m",
            silhouette=0.7,
            assignments={ids[0]: (1, 0.4), ids[1]: (1, 0.6), ids[2]: (0, 0.5)},
            stats=[ClusterStatRow(0, 1, 4, 0.5), ClusterStatRow(1, 2, 8, 0.8)],
        )
        assert again == first
        assert session.execute(sa.select(sa.func.count()).select_from(Assignment)).scalar() == 3
        info = latest_clustering(session, dataset_id)
        assert info is not None and info.id == first and info.silhouette == 0.7
        assert info.stats == (ClusterStatRow(0, 1, 4, 0.5), ClusterStatRow(1, 2, 8, 0.8))
        assert cluster_persona_ids(session, first, 1) == sorted(ids[:2])
        assert latest_clustering(session, dataset_id, k=3) is None
    with (
        pytest.raises(StorageError, match=r"unknown cluster id 7 .*valid ids are 0, 1"),
        session_scope(engine) as session,
    ):
        cluster_persona_ids(session, first, 7)


def test_latest_is_newest(engine: sa.Engine, dataset_id: int) -> None:
    with session_scope(engine) as session:
        for k in (2, 3):
            save_clustering(
                session,
                dataset_id=dataset_id,
                k=k,
                seed=0,
                embedding_model="m",
                silhouette=0.1 * k,
                assignments={},
                stats=[ClusterStatRow(c, 0, 0, 0.0) for c in range(k)],
            )
        latest = latest_clustering(session, dataset_id)
        assert latest is not None and latest.k == 3
        two = latest_clustering(session, dataset_id, k=2)
        assert two is not None and two.k == 2


def test_assignment_to_unknown_cluster_refused(engine: sa.Engine, dataset_id: int) -> None:
    with pytest.raises(ValueError, match=r"clusters \[5\]"), session_scope(engine) as session:
        save_clustering(
            session,
            dataset_id=dataset_id,
            k=1,
            seed=0,
            embedding_model="m",
            silhouette=0.0,
            assignments={1: (5, 0.0)},
            stats=[ClusterStatRow(0, 1, 1, 0.0)],
        )
