"""Evaluation runs and their per-example results, resumable without duplicates.

A run is ``running`` from when it is opened until it is finished (``complete``) or closed as
``failed`` with the reason (an adapter that does not load, an error mid-generation): no run
is left marked running by an evaluation that ended. Opening a failed run again resumes it.

``trial_number`` is ``-1`` for "no trial" (e.g. the base model) and ``cluster_id`` ``-1``
for "all personas": NULLs would make the unique key unenforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.engine import dialect_insert
from storage.errors import StorageError
from storage.models import (
    ALL_CLUSTERS,
    NO_TRIAL,
    EvaluationResult,
    EvaluationRun,
    Example,
    Persona,
)

RUNNING = "running"
COMPLETE = "complete"
FAILED = "failed"
FAILURE_CHARS = 2000
"""The longest reason kept for a failed run (a driver's or peft's message may run long)."""


@dataclass(frozen=True)
class ResultRow:
    """One evaluated example with the reference reply."""

    example_id: int
    persona_key: str
    generated: str
    reference: str
    similarity: float


@dataclass(frozen=True)
class RunInfo:
    """An evaluation run."""

    id: int
    study_name: str
    method: str
    trial_number: int
    dataset_id: int
    clustering_id: int | None
    cluster_id: int
    split: str
    embedding_model: str
    status: str
    mean_similarity: float | None
    n_examples: int | None
    failure: str | None = None
    """Why the run failed, while its status is ``"failed"``."""


def start_evaluation_run(
    session: Session,
    *,
    study_name: str,
    method: str,
    trial_number: int = NO_TRIAL,
    dataset_id: int,
    clustering_id: int | None,
    cluster_id: int = ALL_CLUSTERS,
    split: str = "test",
    embedding_model: str,
) -> int:
    """Return the run for (study, method, trial, cluster, split), creating it if needed.

    Check :func:`evaluation_run_status`: a ``"complete"`` run can be skipped, a
    ``"running"`` one resumed with :func:`done_example_ids`. A ``"failed"`` run is opened
    again as ``"running"`` (its reason cleared), to be resumed the same way.

    Args:
        session: An open session.
        study_name: The study the evaluated model came from.
        method: ``"cluster_lora"``, ``"base_model"``, ...
        trial_number: The trial, or ``-1``.
        dataset_id: The evaluated dataset.
        clustering_id: The clustering used, if any.
        cluster_id: The evaluated cluster, or ``-1`` for all personas.
        split: ``"train"``, ``"val"`` or ``"test"``.
        embedding_model: The model that scores similarity.

    Returns:
        The run id.

    Raises:
        StorageError: If the run exists with another dataset, clustering or embedding model.
    """
    key = {
        "study_name": study_name,
        "method": method,
        "trial_number": trial_number,
        "cluster_id": cluster_id,
        "split": split,
    }
    stmt = dialect_insert(session, EvaluationRun).values(
        **key,
        dataset_id=dataset_id,
        clustering_id=clustering_id,
        embedding_model=embedding_model,
        status=RUNNING,
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=list(key)))
    run = session.execute(
        select(EvaluationRun).where(*(getattr(EvaluationRun, k) == v for k, v in key.items()))
    ).scalar_one()
    stored = (run.dataset_id, run.clustering_id, run.embedding_model)
    wanted = (dataset_id, clustering_id, embedding_model)
    if stored != wanted:
        raise StorageError(
            f"evaluation run {run.id} ({key}) exists with dataset/clustering/embedding model "
            f"{stored}, not {wanted}: use another study name or method"
        )
    if run.status == FAILED:
        session.execute(
            update(EvaluationRun)
            .where(EvaluationRun.id == run.id, EvaluationRun.status == FAILED)
            .values(status=RUNNING, failure=None)
            .execution_options(synchronize_session=False)
        )
    return run.id


def fail_evaluation_run(session: Session, run_id: int, reason: str) -> None:
    """Close a running run as ``"failed"`` with ``reason``; a complete run stays complete.

    Its results so far stay: opening it again (:func:`start_evaluation_run`) resumes it.

    Args:
        session: An open session.
        run_id: The run.
        reason: Why it failed, one line (cut to :data:`FAILURE_CHARS` characters).
    """
    line = " ".join(reason.split())[:FAILURE_CHARS] or "failed"
    session.execute(
        update(EvaluationRun)
        .where(EvaluationRun.id == run_id, EvaluationRun.status != COMPLETE)
        .values(status=FAILED, failure=line, finished_at=func.now())
        .execution_options(synchronize_session=False)
    )


def evaluation_run_status(session: Session, run_id: int) -> str:
    """Return ``"running"``, ``"complete"`` or ``"failed"``.

    Raises:
        StorageError: If there is no run ``run_id``.
    """
    status = session.execute(
        select(EvaluationRun.status).where(EvaluationRun.id == run_id)
    ).scalar()
    if status is None:
        raise StorageError(f"no evaluation run with id {run_id}")
    return status


def done_example_ids(session: Session, run_id: int) -> set[int]:
    """Return the ids of the examples that already have a result in the run."""
    return set(
        session.execute(
            select(EvaluationResult.example_id).where(EvaluationResult.run_id == run_id)
        ).scalars()
    )


def save_evaluation_results(
    session: Session, run_id: int, rows: Sequence[tuple[int, str, float]]
) -> None:
    """Insert ``(example_id, generated, similarity)`` rows; ones already stored are skipped.

    Args:
        session: An open session.
        run_id: The run.
        rows: Results to add.
    """
    if not rows:
        return
    stmt = dialect_insert(session, EvaluationResult).on_conflict_do_nothing(
        index_elements=["run_id", "example_id"]
    )
    session.execute(
        stmt,
        [{"run_id": run_id, "example_id": e, "generated": g, "similarity": s} for e, g, s in rows],
    )


def finish_evaluation_run(session: Session, run_id: int) -> float:
    """Mark a run complete and store its score: the mean over personas of each one's mean.

    Args:
        session: An open session.
        run_id: The run.

    Returns:
        The mean similarity.

    Raises:
        StorageError: If the run has no results.
    """
    per_persona = (
        select(
            Example.persona_id,
            func.avg(EvaluationResult.similarity).label("mean"),
            func.count().label("n"),
        )
        .join(Example, Example.id == EvaluationResult.example_id)
        .where(EvaluationResult.run_id == run_id)
        .group_by(Example.persona_id)
        .subquery()
    )
    mean, n = session.execute(select(func.avg(per_persona.c.mean), func.sum(per_persona.c.n))).one()
    if mean is None:
        raise StorageError(f"evaluation run {run_id} has no results to finish")
    session.execute(
        update(EvaluationRun)
        .where(EvaluationRun.id == run_id)
        .values(
            status=COMPLETE,
            failure=None,
            mean_similarity=float(mean),
            n_examples=int(n),
            finished_at=func.now(),
        )
        .execution_options(synchronize_session=False)
    )
    return float(mean)


def evaluation_results(session: Session, run_id: int) -> list[ResultRow]:
    """Return a run's results ordered by persona key and example order."""
    rows = session.execute(
        select(
            EvaluationResult.example_id,
            Persona.key,
            EvaluationResult.generated,
            Example.reply,
            EvaluationResult.similarity,
        )
        .join(Example, Example.id == EvaluationResult.example_id)
        .join(Persona, Persona.id == Example.persona_id)
        .where(EvaluationResult.run_id == run_id)
        .order_by(Persona.key, Example.idx)
    )
    return [ResultRow(*row) for row in rows]


def list_evaluation_runs(session: Session, study_name: str) -> list[RunInfo]:
    """Return a study's evaluation runs in creation order."""
    runs = session.execute(
        select(EvaluationRun)
        .where(EvaluationRun.study_name == study_name)
        .order_by(EvaluationRun.id)
    ).scalars()
    return [
        RunInfo(
            id=r.id,
            study_name=r.study_name,
            method=r.method,
            trial_number=r.trial_number,
            dataset_id=r.dataset_id,
            clustering_id=r.clustering_id,
            cluster_id=r.cluster_id,
            split=r.split,
            embedding_model=r.embedding_model,
            status=r.status,
            mean_similarity=r.mean_similarity,
            n_examples=r.n_examples,
            failure=r.failure,
        )
        for r in runs
    ]
