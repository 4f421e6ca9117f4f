"""An exact trial budget shared by a study's workers.

Optuna's ``n_trials`` is per ``optimize`` call, so several workers overshoot it. Each worker
claims a ticket with one conditional ``UPDATE`` before it asks for a trial; the row lock
(PostgreSQL re-checks the ``WHERE`` after waiting) or SQLite's write lock makes it exact.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from storage.engine import dialect_insert
from storage.errors import StorageError
from storage.models import StudyBudget


def set_budget(session: Session, study_name: str, n_trials: int) -> None:
    """Set a study's trial budget, keeping the tickets already claimed.

    Args:
        session: An open session.
        study_name: The study.
        n_trials: Total trials the study may start.

    Raises:
        ValueError: If ``n_trials`` is negative.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 0:
        raise ValueError(f"invalid n_trials {n_trials!r}: use a non-negative integer")
    stmt = dialect_insert(session, StudyBudget).values(
        study_name=study_name, n_trials=n_trials, claimed=0
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["study_name"], set_={"n_trials": stmt.excluded.n_trials}
        )
    )


def delete_budget(session: Session, study_name: str) -> None:
    """Delete a study's trial budget, if it has one (a study created afresh starts with no
    tickets claimed; a failed creation leaves no budget behind).

    Args:
        session: An open session.
        study_name: The study.
    """
    session.execute(delete(StudyBudget).where(StudyBudget.study_name == study_name))


def claim_ticket(session: Session, study_name: str) -> bool:
    """Claim one trial of the budget, atomically.

    Args:
        session: An open session; commit it at once (use a fresh ``session_scope``).
        study_name: The study.

    Returns:
        ``True`` if a ticket was claimed, ``False`` if the budget is spent.

    Raises:
        StorageError: If the study has no budget.
    """
    result = session.execute(
        update(StudyBudget)
        .where(StudyBudget.study_name == study_name, StudyBudget.claimed < StudyBudget.n_trials)
        .values(claimed=StudyBudget.claimed + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return True
    if budget(session, study_name) is None:
        raise StorageError(f"study {study_name!r} has no trial budget; call set_budget first")
    return False


def release_ticket(session: Session, study_name: str) -> None:
    """Give back one claimed ticket (after a failed trial, so a retry can run).

    Args:
        session: An open session.
        study_name: The study.
    """
    session.execute(
        update(StudyBudget)
        .where(StudyBudget.study_name == study_name, StudyBudget.claimed > 0)
        .values(claimed=StudyBudget.claimed - 1)
        .execution_options(synchronize_session=False)
    )


def budget(session: Session, study_name: str) -> tuple[int, int] | None:
    """Return ``(n_trials, claimed)`` of a study, or ``None`` if it has no budget.

    Args:
        session: An open session.
        study_name: The study.

    Returns:
        The budget and the tickets claimed so far.
    """
    row = session.execute(
        select(StudyBudget.n_trials, StudyBudget.claimed).where(
            StudyBudget.study_name == study_name
        )
    ).one_or_none()
    return None if row is None else (row.n_trials, row.claimed)
