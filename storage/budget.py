"""An exact study budget, in trials and in training steps, shared by a study's workers.

Optuna's ``n_trials`` is per ``optimize`` call, so several workers overshoot it. Each worker
claims a ticket with one conditional ``UPDATE`` before it asks for a trial; the row lock
(PostgreSQL re-checks the ``WHERE`` after waiting) or SQLite's write lock makes it exact.

The step budget (``max_steps``, optimizer steps of all trials together) is charged the same
way, as it is used: before a trial trains the optimizer steps up to its next evaluation, it
charges them with one conditional ``UPDATE ... WHERE used_steps + n <= max_steps``. A charge
that does not fit stops that trial at the evaluation it just made, and ends the step budget
for every worker (``steps_spent``): no trial starts or trains on after it, so a remainder
smaller than any trial's next interval cannot start trial after trial that trains nothing.
Steps are never trained before they are charged, so the steps trained never exceed
``max_steps``; steps charged for a trial that then failed stay charged (they were spent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from storage.engine import dialect_insert
from storage.errors import StorageError
from storage.models import StudyBudget


def set_budget(
    session: Session, study_name: str, n_trials: int, *, max_steps: int | None = None
) -> None:
    """Set a study's budget, keeping the tickets claimed and the steps used so far.

    Setting it again opens a step budget that a charge had ended (``steps_spent``); a charge
    that still does not fit ends it again.

    Args:
        session: An open session.
        study_name: The study.
        n_trials: Total trials the study may start.
        max_steps: Total optimizer steps its trials may train; None: no step limit.

    Raises:
        ValueError: If ``n_trials`` or ``max_steps`` is not a non-negative integer.
    """
    _check_count("n_trials", n_trials)
    if max_steps is not None:
        _check_count("max_steps", max_steps)
    stmt = dialect_insert(session, StudyBudget).values(
        study_name=study_name,
        n_trials=n_trials,
        claimed=0,
        max_steps=max_steps,
        used_steps=0,
        steps_spent=False,
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["study_name"],
            set_={
                "n_trials": stmt.excluded.n_trials,
                "max_steps": stmt.excluded.max_steps,
                "steps_spent": False,
            },
        )
    )


def _check_count(name: str, value: object, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"invalid {name} {value!r}: use an integer >= {minimum}")


def delete_budget(session: Session, study_name: str) -> None:
    """Delete a study's trial budget, if it has one (a study created afresh starts with no
    tickets claimed; a failed creation leaves no budget behind).

    Args:
        session: An open session.
        study_name: The study.
    """
    session.execute(delete(StudyBudget).where(StudyBudget.study_name == study_name))


def claim_ticket(session: Session, study_name: str) -> bool:
    """Claim one trial of the budget, atomically; none while the step budget is spent.

    Args:
        session: An open session; commit it at once (use a fresh ``session_scope``).
        study_name: The study.

    Returns:
        ``True`` if a ticket was claimed, ``False`` if the trials or the steps are spent.

    Raises:
        StorageError: If the study has no budget.
    """
    result = session.execute(
        update(StudyBudget)
        .where(
            StudyBudget.study_name == study_name,
            StudyBudget.claimed < StudyBudget.n_trials,
            _steps_left(),
        )
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


def _steps_left() -> Any:
    """SQL condition: the step budget has steps left (or there is no step limit)."""
    return or_(
        StudyBudget.max_steps.is_(None),
        (StudyBudget.used_steps < StudyBudget.max_steps) & StudyBudget.steps_spent.is_(False),
    )


def charge_steps(session: Session, study_name: str, n: int) -> bool:
    """Charge ``n`` optimizer steps to the study's step budget before training them, atomically.

    A charge that does not fit ends the step budget (see the module docstring).

    Args:
        session: An open session; commit it at once (use a fresh ``session_scope``).
        study_name: The study.
        n: The steps about to be trained (>= 1).

    Returns:
        ``True`` if the steps were charged (always, without a step limit); ``False`` if they
        do not fit or the step budget has ended: stop training.

    Raises:
        ValueError: If ``n`` is not a positive integer.
        StorageError: If the study has no budget.
    """
    _check_count("n", n, minimum=1)
    result = session.execute(
        update(StudyBudget)
        .where(
            StudyBudget.study_name == study_name,
            or_(
                StudyBudget.max_steps.is_(None),
                (StudyBudget.used_steps + n <= StudyBudget.max_steps)
                & StudyBudget.steps_spent.is_(False),
            ),
        )
        .values(used_steps=StudyBudget.used_steps + n)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return True
    ended = session.execute(
        update(StudyBudget)
        .where(StudyBudget.study_name == study_name)
        .values(steps_spent=True)
        .execution_options(synchronize_session=False)
    )
    if ended.rowcount != 1:  # type: ignore[attr-defined]
        raise StorageError(f"study {study_name!r} has no budget; call set_budget first")
    return False


@dataclass(frozen=True)
class StepBudget:
    """A study's step budget as stored."""

    max_steps: int | None
    """Optimizer steps all trials together may train; None: no step limit."""
    used_steps: int
    """Steps charged so far."""
    spent: bool
    """True once a charge did not fit (no trial starts or goes on)."""

    @property
    def ended(self) -> bool:
        """Whether no more steps can be charged."""
        if self.max_steps is None:
            return False
        return self.spent or self.used_steps >= self.max_steps


def step_budget(session: Session, study_name: str) -> StepBudget | None:
    """Return a study's step budget, or ``None`` if it has no budget.

    Args:
        session: An open session.
        study_name: The study.
    """
    row = session.execute(
        select(StudyBudget.max_steps, StudyBudget.used_steps, StudyBudget.steps_spent).where(
            StudyBudget.study_name == study_name
        )
    ).one_or_none()
    return None if row is None else StepBudget(row.max_steps, row.used_steps, row.steps_spent)


def budget_spent(session: Session, study_name: str) -> bool:
    """Whether no trial can claim a ticket any more: its trials or its steps are spent.

    Args:
        session: An open session.
        study_name: The study.

    Raises:
        StorageError: If the study has no budget.
    """
    trials, steps = budget(session, study_name), step_budget(session, study_name)
    if trials is None or steps is None:
        raise StorageError(f"study {study_name!r} has no budget; call set_budget first")
    n_trials, claimed = trials
    return claimed >= n_trials or steps.ended
