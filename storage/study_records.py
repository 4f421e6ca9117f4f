"""JSON documents a study keeps in our own table, by key: its whole config, each evaluated
trial's figures, the promoted trial.

They used to be Optuna study user attributes, which ``optuna studies`` and the dashboard print
whole: one study's row ran to thousands of characters. The study's attributes now hold short
pointers (a key and a sha256 prefix), and the documents live here, written with one upsert so
that rewriting a record is idempotent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, inspect, select
from sqlalchemy.orm import Session

from storage.engine import dialect_insert
from storage.models import StudyRecord


def canonical_json(value: Any) -> str:
    """``value`` as the JSON stored and hashed: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def record_sha256(value: Any) -> str:
    """sha256 (hex) of ``value``'s canonical JSON, as :func:`save_study_record` stores it."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def save_study_record(session: Session, study_name: str, key: str, value: Any) -> str:
    """Write (or replace) the study's record ``key``.

    Args:
        session: An open session.
        study_name: The study.
        key: The record's name within the study (``config``, ``evaluation:trial:3``).
        value: Any JSON-serializable value.

    Returns:
        The sha256 of the stored JSON.

    Raises:
        TypeError: If ``value`` is not JSON-serializable.
    """
    text = canonical_json(value)
    sha256 = hashlib.sha256(text.encode()).hexdigest()
    stmt = dialect_insert(session, StudyRecord).values(
        study_name=study_name, key=key, value=text, sha256=sha256
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["study_name", "key"],
            set_={"value": stmt.excluded.value, "sha256": stmt.excluded.sha256},
        )
    )
    return sha256


def has_study_records(session: Session) -> bool:
    """Whether the database has our ``study_records`` table: a reader of Optuna's tables may
    meet a database that Optuna alone wrote, or ours before migration 0005."""
    return bool(inspect(session.connection()).has_table(StudyRecord.__tablename__))


def study_record(session: Session, study_name: str, key: str) -> tuple[Any, str] | None:
    """The study's record ``key`` and its sha256, or None when there is none."""
    row = session.execute(
        select(StudyRecord.value, StudyRecord.sha256).where(
            StudyRecord.study_name == study_name, StudyRecord.key == key
        )
    ).one_or_none()
    return None if row is None else (json.loads(row.value), row.sha256)


def study_records(
    session: Session, study_name: str, *, prefix: str = "", keys: Collection[str] | None = None
) -> dict[str, Any]:
    """{key: value} of the study's records whose key starts with ``prefix`` (and is one of
    ``keys``, where given: a page of trials reads its trials' records only)."""
    query = select(StudyRecord.key, StudyRecord.value).where(
        StudyRecord.study_name == study_name,
        StudyRecord.key.startswith(prefix, autoescape=True),
    )
    if keys is not None:
        query = query.where(StudyRecord.key.in_(sorted(keys)))
    return {row.key: json.loads(row.value) for row in session.execute(query)}


def study_records_of_key(session: Session, key: str) -> dict[str, Any]:
    """{study name: value} of every study's record ``key`` (one query, for listings)."""
    rows = session.execute(
        select(StudyRecord.study_name, StudyRecord.value).where(StudyRecord.key == key)
    )
    return {row.study_name: json.loads(row.value) for row in rows}


def delete_study_records(session: Session, study_name: str) -> None:
    """Delete every record of the study (a study created afresh starts with none)."""
    session.execute(delete(StudyRecord).where(StudyRecord.study_name == study_name))
