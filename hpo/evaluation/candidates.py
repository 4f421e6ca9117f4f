"""A study's COMPLETE trials as candidates for evaluation: each with its recorded adapter
(its place under the output root and its sha256: the trial's record, or the user attributes of a
trial finished before the records, :mod:`hpo.study.trial_records`), best eval_loss first."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from evaluators.trials.promotion import PromotedTrial
from hpo.study.trial_records import ADAPTER_PATH, ADAPTER_SHA256, records_of, trial_fields


def as_candidate(
    study_name: str, trial: optuna.trial.FrozenTrial, record: Mapping[str, Any] | None = None
) -> PromotedTrial | None:
    """A COMPLETE trial with its recorded adapter, or None when it has none.

    Args:
        study_name: The study.
        trial: The trial.
        record: The trial's record (:func:`hpo.study.trial_records.records_of`); None reads
            the adapter from its user attributes only (a trial finished before the records).
    """
    fields = trial_fields(trial.user_attrs, record)
    path, sha256 = fields.get(ADAPTER_PATH), fields.get(ADAPTER_SHA256)
    if trial.value is None or path is None or sha256 is None:
        return None
    return PromotedTrial(
        study_name=study_name,
        trial_number=trial.number,
        eval_loss=float(trial.value),
        params=dict(trial.params),
        adapter_path=Path(path),
        adapter_sha256=str(sha256),
    )


def complete_trials(study: optuna.Study, engine: Any) -> list[PromotedTrial]:
    """The study's COMPLETE trials with an adapter, best eval_loss first (ties: lower number).

    Args:
        study: The study.
        engine: Our storage's engine, which holds the trials' records.
    """
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    records = records_of(engine, study.study_name, [t.number for t in trials])
    found = [
        c
        for t in trials
        if (c := as_candidate(study.study_name, t, records.get(t.number))) is not None
    ]
    return sorted(found, key=lambda c: (c.eval_loss, c.trial_number))


def top_trials(study: optuna.Study, k: int, engine: Any) -> list[PromotedTrial]:
    """The top ``k`` COMPLETE trials by eval_loss."""
    return complete_trials(study, engine)[:k]


__all__ = ["as_candidate", "complete_trials", "top_trials"]
