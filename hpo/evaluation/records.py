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

TRIAL_ATTR_PREFIX = "evaluation:trial:"
"""Study record ``evaluation:trial:<N>`` (``storage.study_records``): trial N's similarity, CI
and diversity; a study user attribute of that name in studies evaluated before 0005. Shown in
the dashboard as trial N's note."""
PROMOTED_ATTR = "evaluation:promoted"
"""Study record: the promoted trial, its similarity and the results file (a study user
attribute in studies evaluated before 0005)."""
PROMOTED_TRIAL_ATTR = "evaluation:promoted_trial"
"""Study user attribute: the promoted trial's number (short: ``optuna studies`` prints the
study's user attributes whole)."""


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
