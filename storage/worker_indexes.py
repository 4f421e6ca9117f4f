"""Distinct worker indexes: one counter per study, claimed atomically.

A worker's index offsets its sampler's seed (``hpo.study.strategies.make_sampler``), so two
workers with one index propose the same points: four workers started by hand, all index 0,
repeated 5 of a study's 12 trials. A worker started without an index claims the next one here,
and ``hpo launch`` claims a block for the workers it starts, so hand-started, compose-scaled
and scheduler-started workers never share one.

The claim is one statement, ``INSERT ... ON CONFLICT (study_name) DO UPDATE SET next_index =
next_index + n RETURNING next_index``: on PostgreSQL a second claimer waits for the first one's
row lock and then adds to its committed value; on SQLite the statement holds the write lock.
Either way the claimed ranges never overlap, however many workers start at once.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage.engine import dialect_insert
from storage.models import WorkerIndex


def claim_worker_indexes(session: Session, study_name: str, n: int = 1) -> range:
    """Claim ``n`` consecutive worker indexes of a study, none ever claimed before.

    Args:
        session: An open session; commit it at once (use a fresh ``session_scope``).
        study_name: The study (its first claim starts at 0).
        n: How many indexes (one per worker about to start).

    Returns:
        The claimed indexes.

    Raises:
        ValueError: If ``n`` is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"invalid n {n!r}: claim 1 or more worker indexes")
    stmt = dialect_insert(session, WorkerIndex).values(study_name=study_name, next_index=n)
    stmt = stmt.on_conflict_do_update(
        index_elements=["study_name"],
        set_={"next_index": WorkerIndex.next_index + stmt.excluded.next_index},
    ).returning(WorkerIndex.next_index)
    end = int(session.execute(stmt).scalar_one())
    return range(end - n, end)
