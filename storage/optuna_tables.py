"""Read-only SQL over Optuna's own tables: the few rows a study query shows, not every trial.

Optuna's API answers "the best five trials" or "how many trials per state" by loading every
trial with its parameters, attributes and intermediate values (``Study.get_trials``): on a
study of 10,000 trials with 10 intermediate values each, ``hpo study best`` took 7 to 8 s, as
long as ``optuna best-trial``. The functions here ask the database instead: counts with one
``GROUP BY``, the best trials with ``ORDER BY ... LIMIT n`` over the COMPLETE trials' values,
a page of trials by number; parameters and attributes are then fetched for those trials only.

Why Optuna's tables and not a summary table of ours: Optuna writes trials from many places
(``tell``, the heartbeat sweep that fails a stale trial, the retry callback that re-queues
it, ``optuna`` CLI commands, the dashboard), and a summary table would need every one of them
to keep it in sync; a path that forgot would leave it silently wrong. Optuna's tables are
right by construction. The price is coupling to their layout, which is versioned and checked
(:mod:`storage.optuna_schema`). Nothing here writes.

Values are returned as Optuna stores them: a parameter as its internal float with its
distribution's JSON (``hpo.study.queries`` turns them into the values Optuna's API returns),
user and system attributes decoded from JSON, infinities and NaN from their stored type columns.

Every function takes a session from :func:`storage.optuna_schema.read_session`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.errors import NotFoundError
from storage.optuna_schema import (
    stored_value,
    studies,
    study_directions,
    study_user_attributes,
    trial_intermediate_values,
    trial_params,
    trial_system_attributes,
    trial_user_attributes,
    trial_values,
    trials,
    type_rank,
    where,
)

_IN_BATCH = 500
"""Trial ids per ``IN (...)`` list: far below the bound parameters SQLite allows in one
statement (32,766), whatever the page size."""


@dataclass(frozen=True)
class StoredStudy:
    """One study: its counts by state and its best COMPLETE trial."""

    study_id: int
    name: str
    directions: tuple[str, ...]
    """``MINIMIZE`` or ``MAXIMIZE`` per objective."""
    counts: dict[str, int]
    """Trials by state name; states without trials are left out."""
    best_number: int | None
    """Number of the best COMPLETE trial (single-objective studies only)."""
    best_value: float | None
    user_attrs: dict[str, Any] = field(default_factory=dict)
    """The study user attributes asked for, decoded from JSON."""


@dataclass(frozen=True)
class StoredTrial:
    """One trial as Optuna stored it (objective 0 only)."""

    trial_id: int
    number: int
    state: str
    value: float | None
    params: dict[str, tuple[float, str]]
    """Name -> (internal value, distribution JSON), as in ``trial_params``."""
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    """The system attributes asked for, decoded from JSON."""
    last_intermediate: tuple[int, float] | None
    """The intermediate value of the highest step, with its step."""


def _study_row(session: Session, name: str) -> tuple[int, str]:
    row = session.execute(
        sa.select(studies.c.study_id, studies.c.study_name).where(studies.c.study_name == name)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no study named {name!r} in {where(session)}")
    return int(row.study_id), str(row.study_name)


def _directions(session: Session, study_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    rows = session.execute(
        sa.select(study_directions.c.study_id, study_directions.c.direction)
        .where(study_directions.c.study_id.in_(study_ids))
        .order_by(study_directions.c.study_id, study_directions.c.objective)
    )
    out: dict[int, list[str]] = {}
    for study_id, direction in rows:
        out.setdefault(study_id, []).append(direction)
    return {k: tuple(v) for k, v in out.items()}


def _counts(session: Session, study_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    rows = session.execute(
        sa.select(trials.c.study_id, trials.c.state, sa.func.count())
        .where(trials.c.study_id.in_(study_ids))
        .group_by(trials.c.study_id, trials.c.state)
    )
    out: dict[int, dict[str, int]] = {}
    for study_id, state, count in rows:
        out.setdefault(study_id, {})[state] = int(count)
    return out


def _study_attrs(
    session: Session, study_ids: Sequence[int], keys: Sequence[str]
) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    if not keys:
        return out
    rows = session.execute(
        sa.select(
            study_user_attributes.c.study_id,
            study_user_attributes.c.key,
            study_user_attributes.c.value_json,
        ).where(
            study_user_attributes.c.study_id.in_(study_ids),
            study_user_attributes.c.key.in_(keys),
        )
    )
    for study_id, key, value_json in rows:
        out.setdefault(study_id, {})[key] = json.loads(value_json)
    return out


def _best_query(study_id: int, direction: str) -> sa.Select[Any]:
    """The study's COMPLETE trials by objective 0, best first, ties by number."""
    rank = type_rank(trial_values.c.value_type)
    value = trial_values.c.value
    order = (rank, value) if direction == "MINIMIZE" else (rank.desc(), value.desc())
    return (
        sa.select(trials.c.trial_id, trials.c.number, value, trial_values.c.value_type)
        .join(trial_values, trial_values.c.trial_id == trials.c.trial_id)
        .where(
            trials.c.study_id == study_id,
            trials.c.state == "COMPLETE",
            trial_values.c.objective == 0,
        )
        .order_by(*order, trials.c.number)
    )


def _summaries(
    session: Session, rows: Sequence[tuple[int, str]], user_attr_keys: Sequence[str]
) -> list[StoredStudy]:
    ids = [study_id for study_id, _ in rows]
    directions = _directions(session, ids)
    counts = _counts(session, ids)
    attrs = _study_attrs(session, ids, user_attr_keys)
    out = []
    for study_id, name in rows:
        study_directions_ = directions.get(study_id, ())
        best_number = best_value = None
        if len(study_directions_) == 1:
            best = session.execute(_best_query(study_id, study_directions_[0]).limit(1)).first()
            if best is not None:
                best_number, best_value = (
                    int(best.number),
                    stored_value(best.value, best.value_type),
                )
        out.append(
            StoredStudy(
                study_id,
                name,
                study_directions_,
                counts.get(study_id, {}),
                best_number,
                best_value,
                attrs.get(study_id, {}),
            )
        )
    return out


def list_studies(session: Session, *, user_attr_keys: Sequence[str] = ()) -> list[StoredStudy]:
    """Every study with its counts and best trial, by name.

    Args:
        session: From :func:`storage.optuna_schema.read_session`.
        user_attr_keys: Study user attributes to return (others are not read).
    """
    rows = session.execute(
        sa.select(studies.c.study_id, studies.c.study_name).order_by(studies.c.study_name)
    )
    return _summaries(session, [(int(i), str(n)) for i, n in rows], user_attr_keys)


def get_study(session: Session, name: str, *, user_attr_keys: Sequence[str] = ()) -> StoredStudy:
    """One study with its counts and best trial.

    Raises:
        NotFoundError: If there is no study of that name.
    """
    return _summaries(session, [_study_row(session, name)], user_attr_keys)[0]


def best_trial_ids(session: Session, study: StoredStudy, n: int) -> list[int]:
    """The ids of the ``n`` best COMPLETE trials of a single-objective study, best first
    (ties by number).

    Raises:
        ValueError: If ``n`` is below 1 or the study has several objectives.
    """
    if n < 1:
        raise ValueError(f"n={n}: expected at least 1 trial")
    if len(study.directions) != 1:
        raise ValueError(
            f"study {study.name!r} has {len(study.directions)} objectives; the best trials "
            "are defined for one"
        )
    query = _best_query(study.study_id, study.directions[0]).limit(n)
    return [int(row.trial_id) for row in session.execute(query)]


def trial_ids_page(
    session: Session,
    study: StoredStudy,
    *,
    limit: int | None,
    offset: int = 0,
    newest_first: bool = True,
) -> list[int]:
    """The ids of one page of a study's trials in order of number.

    Args:
        session: From :func:`storage.optuna_schema.read_session`.
        study: From :func:`get_study`.
        limit: Trials on the page; None for all.
        offset: Trials skipped before the page (the newest ones when ``newest_first``).
        newest_first: Highest number first.

    Raises:
        ValueError: If ``limit`` is below 1 or ``offset`` below 0.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit}: expected at least 1 trial, or None for all")
    if offset < 0:
        raise ValueError(f"offset={offset}: expected 0 or more")
    number = trials.c.number.desc() if newest_first else trials.c.number
    query = (
        sa.select(trials.c.trial_id)
        .where(trials.c.study_id == study.study_id)
        .order_by(number)
        .limit(limit)
        .offset(offset)
    )
    return [int(i) for i in session.scalars(query)]


def _by_trial(rows: Iterable[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for row in rows:
        out.setdefault(row[0], []).append(row)
    return out


def get_trials(
    session: Session,
    trial_ids: Sequence[int],
    *,
    user_attr_keys: Sequence[str] | None = None,
    system_attr_keys: Sequence[str] | None = (),
) -> list[StoredTrial]:
    """The trials with these ids, in the order given.

    Args:
        session: From :func:`storage.optuna_schema.read_session`.
        trial_ids: Trial ids (from :func:`best_trial_ids` or :func:`trial_ids_page`).
        user_attr_keys: User attributes to read; None for all.
        system_attr_keys: System attributes to read; None for all (none by default).

    Raises:
        NotFoundError: If an id names no trial.
    """
    ids = list(trial_ids)
    out: dict[int, StoredTrial] = {}
    for start in range(0, len(ids), _IN_BATCH):
        batch = ids[start : start + _IN_BATCH]
        out.update(_trial_batch(session, batch, user_attr_keys, system_attr_keys))
    missing = [i for i in ids if i not in out]
    if missing:
        raise NotFoundError(f"no trial with id {missing[0]} in Optuna's tables")
    return [out[i] for i in ids]


def _trial_batch(
    session: Session,
    ids: Sequence[int],
    user_attr_keys: Sequence[str] | None,
    system_attr_keys: Sequence[str] | None,
) -> dict[int, StoredTrial]:
    heads = session.execute(
        sa.select(trials.c.trial_id, trials.c.number, trials.c.state).where(
            trials.c.trial_id.in_(ids)
        )
    ).all()
    values = {
        row.trial_id: stored_value(row.value, row.value_type)
        for row in session.execute(
            sa.select(
                trial_values.c.trial_id, trial_values.c.value, trial_values.c.value_type
            ).where(trial_values.c.trial_id.in_(ids), trial_values.c.objective == 0)
        )
    }
    params = _by_trial(
        session.execute(
            sa.select(
                trial_params.c.trial_id,
                trial_params.c.param_name,
                trial_params.c.param_value,
                trial_params.c.distribution_json,
            )
            .where(trial_params.c.trial_id.in_(ids))
            .order_by(trial_params.c.trial_id, trial_params.c.param_id)
        )
    )
    user = _attrs(session, trial_user_attributes, ids, user_attr_keys)
    system = _attrs(session, trial_system_attributes, ids, system_attr_keys)
    last = _last_intermediate(session, ids)
    return {
        head.trial_id: StoredTrial(
            trial_id=int(head.trial_id),
            number=int(head.number),
            state=str(head.state),
            value=values.get(head.trial_id),
            params={
                row.param_name: (float(row.param_value), str(row.distribution_json))
                for row in params.get(head.trial_id, [])
            },
            user_attrs=user.get(head.trial_id, {}),
            system_attrs=system.get(head.trial_id, {}),
            last_intermediate=last.get(head.trial_id),
        )
        for head in heads
    }


def _attrs(
    session: Session, table: sa.Table, ids: Sequence[int], keys: Sequence[str] | None
) -> dict[int, dict[str, Any]]:
    if keys is not None and not keys:
        return {}
    query = sa.select(table.c.trial_id, table.c.key, table.c.value_json).where(
        table.c.trial_id.in_(ids)
    )
    if keys is not None:
        query = query.where(table.c.key.in_(keys))
    out: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in session.execute(query):
        out.setdefault(trial_id, {})[key] = json.loads(value_json)
    return out


def _last_intermediate(session: Session, ids: Sequence[int]) -> dict[int, tuple[int, float]]:
    values = trial_intermediate_values
    last_step = (
        sa.select(values.c.trial_id, sa.func.max(values.c.step).label("step"))
        .where(values.c.trial_id.in_(ids))
        .group_by(values.c.trial_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(
            values.c.trial_id,
            values.c.step,
            values.c.intermediate_value,
            values.c.intermediate_value_type,
        ).join(
            last_step,
            sa.and_(values.c.trial_id == last_step.c.trial_id, values.c.step == last_step.c.step),
        )
    )
    return {
        row.trial_id: (
            int(row.step),
            stored_value(row.intermediate_value, row.intermediate_value_type),
        )
        for row in rows
    }
