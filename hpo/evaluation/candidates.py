"""A study's COMPLETE trials as candidates for evaluation: each with its recorded adapter
(its place under the output root and its sha256), best eval_loss first."""

from __future__ import annotations

from pathlib import Path

import optuna

from evaluators.trials.promotion import PromotedTrial


def as_candidate(study_name: str, trial: optuna.trial.FrozenTrial) -> PromotedTrial | None:
    """A COMPLETE trial with its recorded adapter, or None when it has none."""
    path, sha256 = trial.user_attrs.get("adapter_path"), trial.user_attrs.get("adapter_sha256")
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


def complete_trials(study: optuna.Study) -> list[PromotedTrial]:
    """The study's COMPLETE trials with an adapter, best eval_loss first (ties: lower number)."""
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    found = [c for t in trials if (c := as_candidate(study.study_name, t)) is not None]
    return sorted(found, key=lambda c: (c.eval_loss, c.trial_number))


def top_trials(study: optuna.Study, k: int) -> list[PromotedTrial]:
    """The top ``k`` COMPLETE trials by eval_loss."""
    return complete_trials(study)[:k]


__all__ = ["as_candidate", "complete_trials", "top_trials"]
