"""What the evaluator records of a study: each evaluated trial's figures and the promoted
trial, as study records (``storage.study_records``), and the promoted trial's number as a short
study user attribute.

Studies evaluated before the records moved out of Optuna's study user attributes (which
``optuna studies`` prints whole) hold them there; the readers here read both forms.
"""

from __future__ import annotations

from typing import Any

import optuna

import storage
from hpo.study.promoted import (
    DECISION_ATTR,
    DECISION_MAX,
    PROMOTED_ATTR,
    PROMOTED_TRIAL_ATTR,
    TRIAL_ATTR_PREFIX,
)

__all__ = [
    "DECISION_ATTR",
    "DECISION_MAX",
    "PROMOTED_ATTR",
    "PROMOTED_TRIAL_ATTR",
    "TRIAL_ATTR_PREFIX",
    "mark_promoted",
    "one_line",
    "promoted_trial",
    "promotion_line",
    "trial_evaluations",
]


def one_line(text: str, limit: int = DECISION_MAX) -> str:
    """``text`` on one line of at most ``limit`` characters (cut with ``...``)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def promotion_line(trial: int, similarity: float, n_evaluated: int) -> str:
    """The decision line of a promotion: ``promoted trial 3: similarity 43.21%, best of 3
    evaluated``."""
    return one_line(
        f"promoted trial {trial}: similarity {100 * similarity:.2f}%, best of {n_evaluated} "
        "evaluated"
    )


def mark_promoted(study: optuna.Study, number: int, result: Any, n_evaluated: int) -> None:
    """Set the study's short attributes of a promotion: the promoted trial's number and the
    decision line (:func:`promotion_line`; ``result`` is the trial's ``MethodResult``), each
    only when it changed."""
    line = promotion_line(number, result.mean_similarity, n_evaluated)
    for key, value in ((PROMOTED_TRIAL_ATTR, number), (DECISION_ATTR, line)):
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def promoted_trial(study: optuna.Study) -> int | None:
    """The promoted trial's number: the study attribute, or the whole record that studies
    evaluated before 0005 kept in the attribute ``evaluation:promoted``."""
    number = study.user_attrs.get(PROMOTED_TRIAL_ATTR)
    if isinstance(number, int):
        return number
    legacy = study.user_attrs.get(PROMOTED_ATTR)
    return int(legacy["trial"]) if isinstance(legacy, dict) and "trial" in legacy else None


def trial_evaluations(engine: Any, study: optuna.Study) -> dict[int, dict[str, Any]]:
    """{trial number: its evaluation figures}, from the study records (and the study user
    attributes of a study evaluated before 0005)."""
    with storage.session_scope(engine) as session:
        records = storage.study_records(session, study.study_name, prefix=TRIAL_ATTR_PREFIX)
    found = {**study.user_attrs, **records}
    return {
        int(key.removeprefix(TRIAL_ATTR_PREFIX)): value
        for key, value in found.items()
        if key.startswith(TRIAL_ATTR_PREFIX) and isinstance(value, dict)
    }


BROKEN_PREFIX = "evaluation:broken:trial:"
"""Study record ``evaluation:broken:trial:<N>``: trial N's adapter object in the shared store
cannot be used (not a tar, truncated, hostile, or without the recorded sha256); the evaluator's
passes no longer fetch it (``hpo evaluate --trial N`` by hand still does)."""


def mark_broken(engine: Any, study_name: str, trial_number: int, error: Any) -> dict[str, Any]:
    """Record that trial ``trial_number``'s adapter object is broken (``error`` a
    ``storage.BrokenArtifact``), so that later passes skip it; returns the record."""
    value = {"trial": trial_number, "artifact_id": error.artifact_id, "reason": error.reason}
    with storage.session_scope(engine) as session:
        storage.save_study_record(session, study_name, f"{BROKEN_PREFIX}{trial_number}", value)
    return value


def broken_trials(engine: Any, study_name: str) -> dict[int, dict[str, Any]]:
    """{trial number: its record} of the trials whose adapter object is marked broken."""
    with storage.session_scope(engine) as session:
        records = storage.study_records(session, study_name, prefix=BROKEN_PREFIX)
    return {
        int(key.removeprefix(BROKEN_PREFIX)): value
        for key, value in records.items()
        if isinstance(value, dict)
    }


def broken_line(target: str, record: dict[str, Any]) -> str:
    """One line naming a skipped trial and its broken object."""
    return (
        f"skipped {target}: its adapter object {record.get('artifact_id')} in the shared store "
        f"is broken ({record.get('reason')}); marked, not fetched again"
    )
