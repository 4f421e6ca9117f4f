"""Optuna's tables as these read-only queries see them, and read-only sessions on them.

The tables are declared here with the columns we read, as Optuna 5.0 declares them
(``optuna/storages/_rdb/models.py``); their layout is versioned by Optuna's Alembic revision in
``alembic_version``, and :func:`check_optuna_schema` refuses a revision not in
:data:`KNOWN_OPTUNA_REVISIONS` with a message that names it, rather than reading columns that
may have moved. Why we read Optuna's tables at all: see :mod:`storage.optuna_tables`.

Reads never take a write lock: on SQLite a separate engine opens deferred transactions with
``PRAGMA query_only`` (the engine of :mod:`storage.engine` begins every transaction with
``BEGIN IMMEDIATE``, which would make a status query wait behind the workers' writes); on
PostgreSQL the transaction is ``REPEATABLE READ`` and read-only, so that the queries of one
call see one snapshot. A SQLite file that does not exist is not created.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from storage.engine import create_engine, normalize_url
from storage.errors import StorageError
from storage.urls import masked_url

KNOWN_OPTUNA_REVISIONS = frozenset({"v3.2.0.a"})
"""Optuna schema revisions (``alembic_version.version_num``) whose tables these queries know:
``v3.2.0.a`` is the head from Optuna 3.2 to 5.0. A new one needs a look at Optuna's
``storages/_rdb/models.py`` before it is added here."""
ReadSession = Session
"""What :func:`read_session` yields (named here, so that callers need not import SQLAlchemy)."""
STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")
"""Optuna's trial states, as stored (the names of ``optuna.trial.TrialState``)."""

_metadata = sa.MetaData()
# The columns we read, declared as Optuna 5.0 declares them (storages/_rdb/models.py). The
# enum types carry Optuna's names: PostgreSQL stores these columns as native enums.
_state = sa.Enum(*STATES, name="trialstate", create_constraint=False)
_value_type = sa.Enum("FINITE", "INF_POS", "INF_NEG", name="trialvaluetype")
_intermediate_type = sa.Enum(
    "FINITE", "INF_POS", "INF_NEG", "NAN", name="trialintermediatevaluetype"
)
_direction = sa.Enum("NOT_SET", "MINIMIZE", "MAXIMIZE", name="studydirection")

alembic_version = sa.Table("alembic_version", _metadata, sa.Column("version_num", sa.String))
studies = sa.Table(
    "studies",
    _metadata,
    sa.Column("study_id", sa.Integer, primary_key=True),
    sa.Column("study_name", sa.String),
)
study_directions = sa.Table(
    "study_directions",
    _metadata,
    sa.Column("study_id", sa.Integer),
    sa.Column("objective", sa.Integer),
    sa.Column("direction", _direction),
)
study_user_attributes = sa.Table(
    "study_user_attributes",
    _metadata,
    sa.Column("study_id", sa.Integer),
    sa.Column("key", sa.String),
    sa.Column("value_json", sa.Text),
)
trials = sa.Table(
    "trials",
    _metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True),
    sa.Column("number", sa.Integer),
    sa.Column("study_id", sa.Integer),
    sa.Column("state", _state),
)
trial_values = sa.Table(
    "trial_values",
    _metadata,
    sa.Column("trial_id", sa.Integer),
    sa.Column("objective", sa.Integer),
    sa.Column("value", sa.Float(precision=53)),
    sa.Column("value_type", _value_type),
)
trial_params = sa.Table(
    "trial_params",
    _metadata,
    sa.Column("param_id", sa.Integer, primary_key=True),
    sa.Column("trial_id", sa.Integer),
    sa.Column("param_name", sa.String),
    sa.Column("param_value", sa.Float(precision=53)),
    sa.Column("distribution_json", sa.Text),
)
trial_user_attributes = sa.Table(
    "trial_user_attributes",
    _metadata,
    sa.Column("trial_id", sa.Integer),
    sa.Column("key", sa.String),
    sa.Column("value_json", sa.Text),
)
trial_system_attributes = sa.Table(
    "trial_system_attributes",
    _metadata,
    sa.Column("trial_id", sa.Integer),
    sa.Column("key", sa.String),
    sa.Column("value_json", sa.Text),
)
trial_intermediate_values = sa.Table(
    "trial_intermediate_values",
    _metadata,
    sa.Column("trial_id", sa.Integer),
    sa.Column("step", sa.Integer),
    sa.Column("intermediate_value", sa.Float(precision=53)),
    sa.Column("intermediate_value_type", _intermediate_type),
)


_sqlite_readers: dict[tuple[int, str], Engine] = {}
_sqlite_readers_lock = threading.Lock()


def _on_reader_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA query_only=ON")
    finally:
        cursor.close()
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (see _on_reader_begin)


def _on_reader_begin(conn: sa.Connection) -> None:
    # Deferred: the first read takes a snapshot (in WAL mode) and no lock that blocks writers.
    conn.exec_driver_sql("BEGIN")


def _sqlite_reader(url: str) -> Engine:
    """An engine for reads of one SQLite file; one per URL and process, without a pool (a
    query opens its file, reads, and closes it)."""
    key = (os.getpid(), url)
    with _sqlite_readers_lock:
        engine = _sqlite_readers.get(key)
        if engine is None:
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            sa.event.listen(engine, "connect", _on_reader_connect)
            sa.event.listen(engine, "begin", _on_reader_begin)
            _sqlite_readers[key] = engine
        return engine


def _sqlite_file(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


@contextmanager
def read_session(url: str) -> Iterator[Session | None]:
    """A read-only session on the database at ``url`` with Optuna's schema checked, or None
    when the database holds no Optuna tables (a SQLite file that does not exist included:
    a read never creates one).

    Args:
        url: A ``sqlite:///...`` or ``postgresql[+psycopg]://...`` URL.

    Yields:
        The session (its one transaction is rolled back at the end), or None.

    Raises:
        InvalidURLError: If the URL cannot be parsed or names another backend.
        StorageError: If the database cannot be read, or Optuna's tables are at a schema
            revision these queries do not know (see :func:`check_optuna_schema`).
    """
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        if path is not None and not path.is_file():
            yield None
            return
        engine = _sqlite_reader(url)
    else:
        engine = create_engine(url).execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    try:
        with Session(engine) as session:
            if not check_optuna_schema(session):
                yield None
                return
            yield session
            session.rollback()
    except SQLAlchemyError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot read Optuna's tables at {masked_url(url)}: {first}") from exc


def where(session: Session) -> str:
    """The masked URL of the session's database, for messages."""
    return masked_url(session.connection().engine.url)


def check_optuna_schema(session: Session) -> bool:
    """Whether the database has Optuna's tables, at a revision these queries know.

    Returns:
        True if it has them; False if it has no ``studies`` table (no study was ever made).

    Raises:
        StorageError: If Optuna's tables exist at a revision not in
            :data:`KNOWN_OPTUNA_REVISIONS`, or without a revision (Optuna before 1.2).
    """
    inspector = sa.inspect(session.connection())
    if not inspector.has_table("studies"):
        return False
    revisions = (
        set(session.scalars(sa.select(alembic_version.c.version_num)))
        if inspector.has_table("alembic_version")
        else set()
    )
    if len(revisions) != 1 or not revisions <= KNOWN_OPTUNA_REVISIONS:
        found = ", ".join(sorted(revisions)) or "none"
        known = ", ".join(sorted(KNOWN_OPTUNA_REVISIONS))
        raise StorageError(
            f"Optuna's tables at {where(session)} are at schema revision "
            f"{found}; the study queries read revision {known} (Optuna 3.2 to 5.0): run "
            "`optuna storage upgrade --storage URL` for an older one, or upgrade persona-hpo "
            "for a newer one"
        )
    return True


def stored_value(value: float | None, value_type: str) -> float:
    """A value from its stored form (Optuna keeps infinities and NaN in the type column)."""
    if value_type == "INF_POS":
        return math.inf
    if value_type == "INF_NEG":
        return -math.inf
    if value_type == "NAN":
        return math.nan
    if value is None:
        raise StorageError(f"a {value_type} value is stored as NULL in Optuna's tables")
    return float(value)


def type_rank(column: Any) -> Any:
    """Order of the stored value types: -inf, finite, +inf (as Optuna orders them)."""
    return sa.case((column == "INF_NEG", -1), (column == "FINITE", 0), else_=1)
