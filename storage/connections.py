"""How our processes connect to the database: the engine options every engine of ours and
Optuna's shares, and the name a connection shows in ``pg_stat_activity``."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

APPLICATION_NAME_ENV = "HPO_APPLICATION_NAME"
"""Overrides the ``application_name`` our PostgreSQL connections report (``pg_stat_activity``)."""


def application_name() -> str:
    """What this process's PostgreSQL connections call themselves: ``hpo <command> <pid>``
    (``$HPO_APPLICATION_NAME`` overrides the command part), so that ``pg_stat_activity`` shows
    who holds which connection."""
    import sys

    role = os.environ.get(APPLICATION_NAME_ENV) or " ".join(
        a for a in sys.argv[1:3] if not a.startswith("-")
    )
    return f"hpo {role} {os.getpid()}".replace("  ", " ")[:63]


def engine_options(url: str | URL) -> dict[str, Any]:
    """``create_engine`` keyword arguments for ``url``, for our engines and Optuna's alike.

    PostgreSQL: no pool (``NullPool``). A connection is opened for a transaction and closed
    after it, so a worker that trains for minutes holds no server connection while it trains,
    and N processes hold only as many connections as they have transactions open at that
    moment (the rule in BENCHMARKS.md, "Connections"). Connecting costs a few milliseconds,
    paid per transaction, not per training step. psycopg's server-side prepared statements
    are off (``prepare_threshold=None``): they are tied to one server connection, which a
    pooler in transaction mode (PgBouncer) hands to other clients between transactions.

    SQLite: a 60 s busy timeout and ``pool_pre_ping``; :func:`configure_sqlite` adds the
    pragmas and ``BEGIN IMMEDIATE``.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        return {"pool_pre_ping": True, "connect_args": {"timeout": 60}}
    return {
        "poolclass": sa.pool.NullPool,
        "connect_args": {"prepare_threshold": None, "application_name": application_name()},
    }


def use_wal(cursor: Any, patience: float = 60.0) -> None:
    """Put the file in WAL mode unless it is already (the mode is stored in the file).

    Switching needs the file to itself, and SQLite answers "database is locked" at once,
    busy timeout or not, while another process holds a lock on a file being created: seen
    with four processes opening a new file together. So: nothing to do once any process
    has switched, and short retries while another holds it.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + patience
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


__all__ = ["APPLICATION_NAME_ENV", "application_name", "engine_options", "use_wal"]
