"""What the evaluator recorded of a study, as the study queries show it: the promoted trial with
its similarity (beside the best trial by eval_loss, which need not be the same trial), each
evaluated trial's similarity, and the study's one-line decision.

The evaluator writes them (:mod:`hpo.evaluation.records`, which takes the names from here, so
that a query imports none of the evaluator): the figures as study records
(``evaluation:trial:<N>``, ``evaluation:promoted``), the promoted trial's number and the
decision line as short study user attributes; a study evaluated before migration 0005 keeps
the promoted record in its user attribute ``evaluation:promoted``, read here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import storage
from storage.optuna_schema import ReadSession
from storage.optuna_tables import StoredStudy

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
DECISION_ATTR = "decision"
"""Study user attribute: the study's verdict in one short line, where the dashboard's study
page shows it ("Study User Attributes"): the evaluator's promotion, then ``hpo report``'s
decision, whichever came last."""
DECISION_MAX = 90
"""Characters of :data:`DECISION_ATTR` at most: ``optuna studies`` prints the study's user
attributes whole in one row, which stays under 300 characters."""


USER_ATTR_KEYS = (PROMOTED_TRIAL_ATTR, PROMOTED_ATTR, DECISION_ATTR)
"""The study user attributes the queries read for the promoted trial and the decision."""


@dataclass(frozen=True)
class TrialSimilarity:
    """A trial's similarity as the evaluator recorded it (the promoted trial: the best
    similarity among the evaluated ones)."""

    number: int
    similarity: float | None
    """Mean embedding similarity on the cluster's test examples, in [-1, 1]."""
    similarity_ci: tuple[float, float] | None = None
    """Its 95% persona-bootstrap interval, where recorded."""
    eval_loss: float | None = None

    def describe(self) -> str:
        """``trial 3: similarity 43.21% (95% CI 40.10% to 46.30%), eval_loss 1.2345``."""
        text = f"trial {self.number}"
        if self.similarity is not None:
            text += f": similarity {100 * self.similarity:.2f}%"
        if self.similarity_ci is not None:
            low, high = self.similarity_ci
            text += f" (95% CI {100 * low:.2f}% to {100 * high:.2f}%)"
        if self.eval_loss is not None:
            text += f", eval_loss {self.eval_loss:.4f}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "number": self.number,
            "similarity": self.similarity,
            "similarity_ci": list(self.similarity_ci) if self.similarity_ci else None,
            "eval_loss": self.eval_loss,
        }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = (_number(v) for v in value)
        if low is not None and high is not None:
            return (low, high)
    return None


def _promoted_number(user_attrs: dict[str, Any], record: Any) -> int | None:
    number = user_attrs.get(PROMOTED_TRIAL_ATTR)
    if isinstance(number, int) and not isinstance(number, bool):
        return number
    trial = record.get("trial") if isinstance(record, dict) else None
    return trial if isinstance(trial, int) and not isinstance(trial, bool) else None


def promoted_trial(session: ReadSession, study: StoredStudy) -> TrialSimilarity | None:
    """The study's promoted trial with its similarity and interval, or None when none is
    promoted yet (``study`` read with :data:`USER_ATTR_KEYS`)."""
    ours = storage.has_study_records(session)
    found = storage.study_record(session, study.name, PROMOTED_ATTR) if ours else None
    record = found[0] if found is not None else study.user_attrs.get(PROMOTED_ATTR)
    number = _promoted_number(study.user_attrs, record)
    if number is None:
        return None
    record = record if isinstance(record, dict) and record.get("trial") == number else {}
    key = f"{TRIAL_ATTR_PREFIX}{number}"
    figures = storage.study_record(session, study.name, key) if ours else None
    trial = figures[0] if figures is not None and isinstance(figures[0], dict) else {}
    return TrialSimilarity(
        number,
        _number(trial.get("similarity", record.get("similarity"))),
        _interval(trial.get("similarity_ci")),
        _number(trial.get("eval_loss", record.get("eval_loss"))),
    )


def promoted_by_study(session: ReadSession) -> dict[str, TrialSimilarity]:
    """{study name: its promoted trial} for every study with a promoted record (one query;
    the similarity without its interval, as a listing shows it)."""
    out: dict[str, TrialSimilarity] = {}
    if not storage.has_study_records(session):
        return out
    for name, record in storage.study_records_of_key(session, PROMOTED_ATTR).items():
        if isinstance(record, dict) and isinstance(record.get("trial"), int):
            out[name] = TrialSimilarity(
                record["trial"],
                _number(record.get("similarity")),
                eval_loss=_number(record.get("eval_loss")),
            )
    return out


def similarities(session: ReadSession, study_name: str) -> dict[int, float]:
    """{trial number: its similarity} of every evaluated trial (one query)."""
    out: dict[int, float] = {}
    if not storage.has_study_records(session):
        return out
    records = storage.study_records(session, study_name, prefix=TRIAL_ATTR_PREFIX)
    for key, value in records.items():
        number = key.removeprefix(TRIAL_ATTR_PREFIX)
        similarity = _number(value.get("similarity")) if isinstance(value, dict) else None
        if number.isdigit() and similarity is not None:
            out[int(number)] = similarity
    return out


def decision(study: StoredStudy) -> str | None:
    """The study's one-line decision, where the evaluator or ``hpo report`` wrote one."""
    line = study.user_attrs.get(DECISION_ATTR)
    return line if isinstance(line, str) and line else None
