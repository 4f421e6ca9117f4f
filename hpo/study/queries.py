"""Read-only views of studies: the study list, status counts, the best trials, pages of trials.

They answer from SQL over Optuna's own tables (:mod:`storage.optuna_tables`: counts by
``GROUP BY``, the best trials by ``ORDER BY ... LIMIT``, a page of trials by number), never
by loading every trial through Optuna's API, so that they stay fast on studies of many
thousand trials. The rows equal what Optuna's API returns for the same trials: parameters are
decoded with Optuna's own distributions, and ``tests/hpo_tests/test_queries_sql.py`` compares
them with ``Study.get_trials`` on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import optuna

import storage
from hpo.study import promoted as evaluated
from hpo.study.config import config_from_dict
from hpo.study.creation import SEED_ATTR
from hpo.study.listing import StudyListRow, list_studies
from hpo.study.promoted import TrialSimilarity
from hpo.study.records import CONFIG_ATTR, CONFIG_REF_ATTR, has_config, stored_config
from hpo.study.trial_records import ADAPTER_PATH, FAIL_REASON, trial_fields, trial_records
from storage import optuna_tables
from storage.optuna_schema import ReadSession, read_session
from storage.optuna_tables import StoredStudy, StoredTrial

TrialState = optuna.trial.TrialState

DEFAULT_PAGE_SIZE = 50
"""Trials on one page of ``hpo study trials`` (the newest first)."""
SHOWN_USER_ATTRS = (ADAPTER_PATH, SEED_ATTR, FAIL_REASON)
"""The trial user attributes a row shows (the adapter and the failure: of trials finished
before they moved to the trial records); no other attribute is read."""


@dataclass(frozen=True)
class TrialRow:
    """One trial, as the CLI prints it."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    adapter_path: str | None
    seed_config: bool
    note: str = ""
    """Why a trial failed, or at which evaluation it was pruned."""
    similarity: float | None = None
    """Its embedding similarity on the test examples, where the evaluator evaluated it."""
    promoted: bool = False
    """Whether it is the promoted trial (the best similarity among the evaluated ones)."""

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
    """The best COMPLETE trial by eval_loss."""
    promoted: TrialSimilarity | None = None
    """The promoted trial (the best similarity among the evaluated trials), where one is."""
    decision: str | None = None
    """The study's one-line decision (the evaluator's promotion or ``hpo report``'s)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "study": self.name,
            "target": self.n_trials_target,
            "finished": self.finished,
            "counts": self.counts,
            "best": self.best.to_dict() if self.best else None,
            "promoted": self.promoted.to_dict() if self.promoted else None,
            "decision": self.decision,
        }

    @property
    def finished(self) -> int:
        """Trials that count against the budget (complete + pruned)."""
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)


@dataclass(frozen=True)
class TrialPage:
    """One page of a study's trials, with the count of all of them."""

    rows: list[TrialRow]
    total: int
    offset: int
    newest_first: bool


def retried_trial_number(t: optuna.trial.FrozenTrial) -> int | None:
    """The number of the stale trial that ``t`` retries, or None if it is no retry.

    Optuna's ``RetryHeartbeatStaleTrialCallback.retried_trial_number`` is marked experimental;
    its warning is silenced here so that every listing does not repeat it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)


def _note(state: str, fail_reason: Any, retried: int | None, last: tuple[int, float] | None) -> str:
    if state == TrialState.FAIL.name:
        reason = fail_reason or "worker lost (no heartbeat)"
        return reason if retried is None else f"{reason}; retry of trial {retried}"
    if state == TrialState.PRUNED.name and last is not None:
        step, value = last
        return f"pruned at evaluation {step} (eval_loss {value:.4f})"
    return "" if retried is None else f"retry of trial {retried}"


@lru_cache(maxsize=1024)
def _distribution(distribution_json: str) -> optuna.distributions.BaseDistribution:
    return optuna.distributions.json_to_distribution(distribution_json)


def _row(t: StoredTrial, record: dict[str, Any] | None) -> TrialRow:
    """The row of a stored trial and its record; parameters in their external form, as
    Optuna's API gives."""
    # Optuna's own reader of the retry link; it reads only the trial's system attributes,
    # which the row carries (all of them: a page's few trials), so no key name of Optuna's
    # is spelled here.
    retried = retried_trial_number(cast(optuna.trial.FrozenTrial, t))
    fields = trial_fields(t.user_attrs, record)
    return TrialRow(
        t.number,
        t.state,
        t.value,
        {
            name: _distribution(distribution_json).to_external_repr(value)
            for name, (value, distribution_json) in t.params.items()
        },
        fields.get(ADAPTER_PATH),
        bool(t.user_attrs.get(SEED_ATTR)),
        _note(t.state, fields.get(FAIL_REASON), retried, t.last_intermediate),
    )


def _rows(session: ReadSession, trial_ids: list[int], study: StoredStudy) -> list[TrialRow]:
    """The rows of the trials of ``study``, each with its record, its similarity where
    evaluated, and the promoted trial marked."""
    stored = optuna_tables.get_trials(
        session,
        trial_ids,
        user_attr_keys=SHOWN_USER_ATTRS,
        system_attr_keys=None,
    )
    records = trial_records(session, study.name, [t.number for t in stored])
    rows = [_row(t, records.get(t.number)) for t in stored]
    if not rows:
        return rows
    scores = evaluated.similarities(session, study.name)
    promoted = evaluated.promoted_trial(session, study)
    return [
        dataclasses.replace(
            r,
            similarity=scores.get(r.number),
            promoted=promoted is not None and promoted.number == r.number,
        )
        for r in rows
    ]


@contextmanager
def _study(url: str, name: str) -> Iterator[tuple[ReadSession, StoredStudy]]:
    """A read session and the study ``name``, made by ``hpo study create``.

    Raises:
        storage.InvalidNameError: If ``name`` is no valid study name.
        storage.NotFoundError: No such study, or one not made by ``hpo study create``.
    """
    storage.validate_name(name, what="study name")
    with read_session(url) as session:
        unknown = storage.NotFoundError(
            f"no study named {name!r} in {storage.masked_url(url)}; "
            "create it with `hpo study create`"
        )
        if session is None:
            raise unknown
        try:
            study = optuna_tables.get_study(
                session, name, user_attr_keys=(*_CONFIG_KEYS, *evaluated.USER_ATTR_KEYS)
            )
        except storage.NotFoundError as exc:
            raise unknown from exc
        if not has_config(study.user_attrs):
            raise storage.NotFoundError(
                f"study {name!r} was not created by `hpo study create` (no config)"
            )
        yield session, study


def study_status(url: str, name: str) -> StudyStatus:
    """Counts of trials by state, with the best COMPLETE trial by eval_loss and the promoted
    trial by similarity (a few small queries, however many trials the study has).

    Raises:
        storage.NotFoundError: No such study, or one not made by ``hpo study create``.
    """
    with _study(url, name) as (session, study):
        config = config_from_dict(
            cast(dict[str, Any], stored_config(session, name, study.user_attrs)), f"study {name}"
        )
        best = _rows(session, optuna_tables.best_trial_ids(session, study, 1), study)
        promoted = evaluated.promoted_trial(session, study)
    return StudyStatus(
        name,
        config.study.n_trials,
        dict(study.counts),
        best[0] if best else None,
        promoted,
        evaluated.decision(study),
    )


@dataclass(frozen=True)
class BestTrials:
    """The best trials by eval_loss, and the promoted trial (by similarity), which may be
    another one."""

    rows: list[TrialRow]
    promoted: TrialSimilarity | None


def best_and_promoted(url: str, name: str, n: int = 5) -> BestTrials:
    """The n COMPLETE trials with the lowest eval_loss, best first (ties by number), each
    with its similarity where evaluated, and the promoted trial.

    Raises:
        storage.NotFoundError: No such study, or one not made by ``hpo study create``.
        ValueError: If ``n`` is below 1.
    """
    with _study(url, name) as (session, study):
        rows = _rows(session, optuna_tables.best_trial_ids(session, study, n), study)
        return BestTrials(rows, evaluated.promoted_trial(session, study))


def best_trials(url: str, name: str, n: int = 5) -> list[TrialRow]:
    """The n COMPLETE trials with the lowest eval_loss, best first (ties by number).

    Raises:
        storage.NotFoundError: No such study, or one not made by ``hpo study create``.
        ValueError: If ``n`` is below 1.
    """
    return best_and_promoted(url, name, n).rows


def trials_page(
    url: str,
    name: str,
    *,
    limit: int | None = DEFAULT_PAGE_SIZE,
    offset: int = 0,
    newest_first: bool = True,
) -> TrialPage:
    """One page of a study's trials: by default the newest :data:`DEFAULT_PAGE_SIZE`.

    Args:
        url: The storage URL.
        name: The study name.
        limit: Trials on the page; None for all of them.
        offset: Trials skipped first (the newest ones when ``newest_first``).
        newest_first: Highest trial number first; False for the oldest first.

    Raises:
        storage.NotFoundError: No such study, or one not made by ``hpo study create``.
        ValueError: If ``limit`` is below 1 or ``offset`` below 0.
    """
    with _study(url, name) as (session, study):
        ids = optuna_tables.trial_ids_page(
            session, study, limit=limit, offset=offset, newest_first=newest_first
        )
        rows = _rows(session, ids, study)
    return TrialPage(rows, sum(study.counts.values()), offset, newest_first)


def all_trials(url: str, name: str) -> list[TrialRow]:
    """Every trial, in order of number."""
    return trials_page(url, name, limit=None, newest_first=False).rows


_CONFIG_KEYS = (CONFIG_ATTR, CONFIG_REF_ATTR)
"""The study user attributes that hold its config (before 0005) or point at it."""


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "SHOWN_USER_ATTRS",
    "BestTrials",
    "StudyListRow",
    "StudyStatus",
    "TrialPage",
    "TrialRow",
    "TrialSimilarity",
    "all_trials",
    "best_and_promoted",
    "best_trials",
    "list_studies",
    "retried_trial_number",
    "study_status",
    "trials_page",
]
