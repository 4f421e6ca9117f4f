"""``hpo study list``: every study in the storage with its counts, its best trial by eval_loss
and its promoted trial by similarity, in a few queries however many studies and trials there
are (:mod:`storage.optuna_tables`).

A per-persona study (``<study>-personas``, :mod:`hpo.personas`) is listed for what it is: a
queue of one adapter per persona, its target the budget of personas, and no best trial (its
values are each persona's own loss, which do not compare).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import storage
from hpo.study import promoted as evaluated
from hpo.study.promoted import TrialSimilarity
from hpo.study.records import (
    CONFIG_ATTR,
    CONFIG_RECORD,
    CONFIG_REF_ATTR,
    KIND_ATTR,
    PERSONAS_KIND,
    SOURCE_ATTR,
)
from storage import optuna_tables
from storage.optuna_schema import read_session
from storage.optuna_tables import StoredStudy


@dataclass(frozen=True)
class StudyListRow:
    """One study of the storage, as ``hpo study list`` prints it."""

    name: str
    n_trials_target: int | None
    """``study.n_trials`` of its config (a per-persona study: its budget, one trial per
    persona); None for a study not made by hpo."""
    counts: dict[str, int]
    best_number: int | None
    best_value: float | None
    """The best trial by eval_loss; None for a per-persona study (no best to read)."""
    promoted: TrialSimilarity | None = None
    """The promoted trial, where one is."""
    personas_of: str | None = None
    """The tuned study of a per-persona study (``<study>-personas``); None for others."""

    @property
    def total(self) -> int:
        """Trials in every state."""
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        """Trials that count against the budget (complete + pruned)."""
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        promoted = self.promoted.to_dict() if self.promoted else None
        return {
            **self.__dict__,
            "promoted": promoted,
            "total": self.total,
            "finished": self.finished,
        }


def list_studies(url: str) -> list[StudyListRow]:
    """Every study in the storage, by name, with its counts and best trial; studies not made
    by ``hpo study create`` included (their target is None). An empty list for a database
    without studies (a SQLite file that does not exist included: it is not created)."""
    with read_session(url) as session:
        if session is None:
            return []
        found = optuna_tables.list_studies(session, user_attr_keys=_LIST_KEYS)
        configs = (
            storage.study_records_of_key(session, CONFIG_RECORD)
            if any(CONFIG_REF_ATTR in s.user_attrs for s in found)
            else {}
        )
        promoted = evaluated.promoted_by_study(session)
        budgets = {
            s.name: storage.budget(session, s.name) for s in found if _personas_of(s) is not None
        }
    rows = []
    for s in found:
        source = _personas_of(s)
        if source is None:
            rows.append(
                StudyListRow(
                    s.name,
                    _target(s, configs),
                    dict(s.counts),
                    s.best_number,
                    s.best_value,
                    promoted.get(s.name),
                )
            )
        else:  # a queue of per-persona adapters: its target is the budget, and no best
            budget = budgets.get(s.name)
            target = budget[0] if budget else None
            rows.append(StudyListRow(s.name, target, dict(s.counts), None, None, None, source))
    return rows


_LIST_KEYS = (CONFIG_ATTR, CONFIG_REF_ATTR, KIND_ATTR, SOURCE_ATTR)
"""What ``hpo study list`` reads of each study's user attributes."""


def _personas_of(study: StoredStudy) -> str | None:
    """The tuned study of a per-persona study, else None."""
    if study.user_attrs.get(KIND_ATTR) != PERSONAS_KIND:
        return None
    return str(study.user_attrs.get(SOURCE_ATTR) or study.name.removesuffix("-personas"))


def _target(study: StoredStudy, configs: dict[str, Any]) -> int | None:
    """``study.n_trials`` of the stored config (``configs``: every study's config record);
    read from the JSON directly, so that a config this code would refuse still lists."""
    stored = (
        configs.get(study.name)
        if CONFIG_REF_ATTR in study.user_attrs
        else study.user_attrs.get(CONFIG_ATTR)
    )
    section = stored.get("study") if isinstance(stored, dict) else None
    n_trials = section.get("n_trials") if isinstance(section, dict) else None
    return n_trials if isinstance(n_trials, int) else None
