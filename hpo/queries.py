"""Read-only views of a study: status counts and the best trials."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import optuna

from hpo.study import load_study

TrialState = optuna.trial.TrialState


@dataclass(frozen=True)
class TrialRow:
    """One finished trial, as the CLI prints it."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    adapter_path: str | None
    seed_config: bool
    note: str = ""
    """Why a trial failed, or at which evaluation it was pruned."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return self.__dict__.copy()


@dataclass(frozen=True)
class StudyStatus:
    """Counts by state and the best trial so far."""

    name: str
    n_trials_target: int
    counts: dict[str, int]
    best: TrialRow | None

    @property
    def finished(self) -> int:
        """Trials that count against the budget (complete + pruned)."""
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)


def _row(t: optuna.trial.FrozenTrial) -> TrialRow:
    return TrialRow(
        t.number,
        t.state.name,
        t.value,
        dict(t.params),
        t.user_attrs.get("adapter_path"),
        bool(t.user_attrs.get("seed_config")),
        _note(t),
    )


def retried_trial_number(t: optuna.trial.FrozenTrial) -> int | None:
    """The number of the stale trial that ``t`` retries, or None if it is no retry.

    Optuna's ``RetryHeartbeatStaleTrialCallback.retried_trial_number`` is marked experimental;
    its warning is silenced here so that every listing does not repeat it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)


def _note(t: optuna.trial.FrozenTrial) -> str:
    retried = retried_trial_number(t)
    if t.state == TrialState.FAIL:
        reason = t.user_attrs.get("fail_reason") or "worker lost (no heartbeat)"
        return reason if retried is None else f"{reason}; retry of trial {retried}"
    if t.state == TrialState.PRUNED and t.intermediate_values:
        step = max(t.intermediate_values)
        return f"pruned at evaluation {step} (eval_loss {t.intermediate_values[step]:.4f})"
    return "" if retried is None else f"retry of trial {retried}"


def study_status(url: str, name: str) -> StudyStatus:
    """Counts of trials by state, with the best COMPLETE trial."""
    study, config = load_study(url, name)
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    best = best_trials(url, name, 1, study=study)
    return StudyStatus(name, config.study.n_trials, counts, best[0] if best else None)


def best_trials(
    url: str,
    name: str,
    n: int = 5,
    *,
    study: optuna.Study | None = None,
) -> list[TrialRow]:
    """The n COMPLETE trials with the lowest eval_loss, best first."""
    if study is None:
        study, _ = load_study(url, name)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = sorted(done, key=lambda t: (t.value if t.value is not None else float("inf"), t.number))
    return [_row(t) for t in done[:n]]


def all_trials(url: str, name: str) -> list[TrialRow]:
    """Every trial, in order of number."""
    study, _ = load_study(url, name)
    return [_row(t) for t in study.get_trials(deepcopy=False)]
