"""Engines, schema creation and the session scope.

One engine per URL per process, so repeated calls share a connection pool. SQLite gets WAL,
a 60 s busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` transactions: every transaction
takes the write lock up front, so a read-then-write never fails with ``database is locked``
halfway through. Keep sessions short on SQLite for that reason (never hold one across training
or generation).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session

from storage import migrations
from storage.connections import engine_options, use_wal
from storage.errors import InvalidURLError, StorageError
from storage.urls import masked_url

DEFAULT_STORAGE_URL = "sqlite:///hpo.db"
"""Used when neither ``--storage`` nor ``HPO_STORAGE`` is given."""

STORAGE_ENV = "HPO_STORAGE"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
SCHEMA_LOCK_ID = 0x4850_4F31
"""Fixed ``pg_advisory_xact_lock`` key serializing schema creation and upgrades ("HPO1")."""

log = logging.getLogger(__name__)

_engines: dict[str, Engine] = {}
_engines_pid = os.getpid()
_engines_lock = threading.Lock()


def default_storage_url() -> str:
    """Return the storage URL from ``HPO_STORAGE``, or ``DEFAULT_STORAGE_URL``.

    Returns:
        The URL string.
    """
    return os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE_URL


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidURLError(
            f"cannot parse storage URL {masked_url(url)!r}: "
            "use sqlite:///path/to/hpo.db or postgresql+psycopg://user@host/dbname"
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise InvalidURLError(
            f"unsupported storage backend {backend!r} in {masked_url(parsed)!r}: "
            "use sqlite:///path/to/hpo.db or postgresql+psycopg://user@host/dbname"
        )
    if parsed.drivername == "postgresql":
        # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        _check_sqlite_folder(parsed)
    return parsed


def _check_sqlite_folder(url: URL) -> None:
    """Refuse a SQLite file in a folder that does not exist: creating it would scatter
    databases wherever a typo points (a folder outside the output root, say)."""
    path = _sqlite_file(url)
    if path is not None and not path.parent.is_dir():
        raise InvalidURLError(
            f"storage URL {masked_url(url)!r}: folder {str(path.parent)!r} does not exist; "
            "create it first, or put the database in an existing folder"
        )


def normalize_url(url: str) -> str:
    """The URL as every engine of ours uses it (``postgresql://`` means psycopg 3).

    Raises:
        InvalidURLError: If the URL cannot be parsed, names another backend, or is a SQLite
            file in a folder that does not exist.
    """
    return _parse_url(url).render_as_string(hide_password=False)


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        use_wal(cursor)
    finally:
        cursor.close()
    # Let SQLAlchemy emit BEGIN itself (see _on_sqlite_begin), not the sqlite3 module.
    dbapi_connection.isolation_level = None


def _on_sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _build_engine(url: URL) -> Engine:
    engine = sa.create_engine(url, **engine_options(url))
    if url.get_backend_name() == "sqlite":
        configure_sqlite(engine)
    return engine


def configure_sqlite(engine: Engine) -> None:
    """Give an SQLite engine our pragmas (WAL, busy timeout) and ``BEGIN IMMEDIATE``
    transactions, and drop its pooled connections so that every new one gets them.

    Deferred transactions that read and then write fail at once with "database is locked"
    when two processes upgrade their locks together (SQLite cannot wait there without a
    deadlock); taking the write lock at BEGIN makes them wait their turn instead. Used for
    Optuna's own engine too, whose read-then-write transactions otherwise collide between
    workers.
    """
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    engine.dispose()


def create_engine(url: str) -> Engine:
    """Return the process's engine for ``url``, creating it on first use.

    Args:
        url: A ``sqlite:///...`` or ``postgresql[+psycopg]://...`` URL.

    Returns:
        A cached engine with ``pool_pre_ping`` (and, for SQLite, WAL and a 60 s busy timeout).

    Raises:
        StorageError: If the URL cannot be parsed or names another backend.
    """
    global _engines_pid
    parsed = _parse_url(url)
    key = parsed.render_as_string(hide_password=False)
    with _engines_lock:
        if _engines_pid != os.getpid():
            # A forked child must not reuse the parent's sockets.
            for inherited in _engines.values():
                inherited.dispose(close=False)
            _engines.clear()
            _engines_pid = os.getpid()
        cached = _engines.get(key)
        if cached is None:
            cached = _engines[key] = _build_engine(parsed)
        return cached


def dispose_engines() -> None:
    """Close every cached engine's pool and forget the engines."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def init_schema(engine: Engine) -> None:
    """Bring our tables to this code's revision at start; safe to run concurrently.

    A database without our tables gets them (every migration runs). A database at an older
    revision is upgraded on SQLite and refused on PostgreSQL, where workers on other machines
    may still run the older code: there ``hpo db upgrade`` is an explicit step. Everything
    runs in one transaction under the schema lock (see :func:`_schema_transaction`).

    Args:
        engine: An engine from :func:`create_engine`.

    Raises:
        StorageError: If the database cannot be reached, is at a revision this code does not
            know (newer code made it), or is an older PostgreSQL database.
    """
    try:
        with _schema_transaction(engine) as conn:
            before = migrations.stored_revision(conn)
            head = migrations.head_revision()
            if before == head:
                return
            _refuse_unknown(engine, before)
            if before is not None and conn.dialect.name != "sqlite":
                raise StorageError(_older_schema_hint(engine.url, before, head))
            _migrate(conn)
        if before is not None:
            log.warning(
                "upgraded our tables at %s from revision %s to %s",
                masked_url(engine.url),
                before,
                head,
            )
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot initialize the schema at {masked_url(engine.url)}: {_first_line(exc)}"
        ) from exc


def upgrade_database(url: str) -> tuple[str | None, str]:
    """Upgrade our tables at ``url`` to this code's head revision (``hpo db upgrade``).

    Optuna's tables are left alone (``optuna storage upgrade`` migrates them). Runs in one
    transaction under the schema lock, so a failure leaves the database as it was; a second
    call is a no-op. A database without our tables gets them.

    Args:
        url: A ``sqlite:///...`` or ``postgresql[+psycopg]://...`` URL.

    Returns:
        The revision before (``None`` for a database without our tables) and after.

    Raises:
        StorageError: If the URL is invalid, the database cannot be reached, or its revision
            is unknown to this code (newer code made it).
    """
    engine = create_engine(url)
    try:
        with _schema_transaction(engine) as conn:
            before = migrations.stored_revision(conn)
            head = migrations.head_revision()
            if before != head:
                _refuse_unknown(engine, before)
                _migrate(conn)
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot upgrade the schema at {masked_url(engine.url)}: {_first_line(exc)}"
        ) from exc
    return before, head


def current_revision(engine: Engine) -> str | None:
    """The revision of our tables in the database of ``engine``.

    Returns:
        The revision, ``"0001"`` for a database made before migrations, ``None`` for a
        database without our tables.

    Raises:
        StorageError: If the database cannot be read.
    """
    try:
        with engine.connect() as conn:
            return migrations.stored_revision(conn)
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read the schema revision at {masked_url(engine.url)}: {_first_line(exc)}"
        ) from exc


@contextmanager
def _schema_transaction(engine: Engine) -> Iterator[sa.Connection]:
    """One transaction under the schema lock: ``pg_advisory_xact_lock`` on PostgreSQL, the
    ``BEGIN IMMEDIATE`` write lock on SQLite.

    On SQLite, foreign keys are off first (they cannot change inside a transaction): a
    migration that rebuilds a table drops the old one, and with foreign keys on that drop
    would cascade-delete the rows referencing it. :func:`_migrate` checks them before the
    commit, and the connection is closed afterwards rather than pooled with them off.
    """
    with engine.connect() as conn:
        is_sqlite = conn.dialect.name == "sqlite"
        try:
            if is_sqlite:
                # On the DBAPI connection: through SQLAlchemy it would run after our BEGIN.
                cursor = conn.connection.cursor()
                cursor.execute("PRAGMA foreign_keys=OFF")
                cursor.close()
            with conn.begin():
                if not is_sqlite:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK_ID)))
                yield conn
        finally:
            if is_sqlite:
                conn.invalidate()


def _refuse_unknown(engine: Engine, revision: str | None) -> None:
    known = migrations.known_revisions()
    if revision is not None and revision not in known:
        raise StorageError(_newer_schema_hint(engine.url, revision, known))


def _newer_schema_hint(url: URL | str, revision: str, known: list[str]) -> str:
    return (
        f"the database at {masked_url(url)} has our tables at revision {revision!r}, newer "
        f"than this code's {known[-1]!r} (it knows {', '.join(known)}): upgrade persona-hpo"
    )


def _older_schema_hint(url: URL | str, revision: str | None, head: str) -> str:
    """The upgrade hint every command gives on a database our code has moved past."""
    if revision is None:
        return (
            f"the database at {masked_url(url)} has none of our tables (this code's are at "
            f"revision {head}): run `hpo db upgrade --storage URL`"
        )
    return (
        f"the database at {masked_url(url)} has our tables at revision {revision}, older than "
        f"this code's {head}: stop the workers and run `hpo db upgrade --storage URL`"
    )


def _migrate(conn: sa.Connection) -> None:
    """Run the migrations to head, then (SQLite) check the foreign keys they left."""
    migrations.upgrade(conn)
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
        if broken is not None:
            raise StorageError(
                f"migration left row {broken[1]} of table {broken[0]!r} pointing at a missing "
                f"row of {broken[2]!r}; nothing was changed"
            )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on error.

    Args:
        engine: An engine from :func:`create_engine`.

    Yields:
        A session; objects stay readable after commit.

    Raises:
        StorageError: Wrapping (and chaining) any ``SQLAlchemyError``.
    """
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise StorageError(
            f"database error at {masked_url(engine.url)}: {_first_line(exc)}"
        ) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def open_storage(url: str | None = None) -> Engine:
    """Return an engine for ``url`` (default: :func:`default_storage_url`) with the schema ready.

    Args:
        url: A database URL, or ``None`` for the default.

    Returns:
        The cached engine.

    Raises:
        StorageError: If the URL is invalid or the database cannot be initialized.
    """
    engine = create_engine(url or default_storage_url())
    init_schema(engine)
    return engine


def dialect_insert(session: Session, table: Any) -> Any:
    """Return a dialect-specific ``INSERT`` (with ``on_conflict_*``) for the session's backend.

    Args:
        session: The session whose bind decides the dialect.
        table: A mapped class or ``Table``.

    Returns:
        A SQLite or PostgreSQL ``Insert`` construct.
    """
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
