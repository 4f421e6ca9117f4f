"""A cross-process lock scoped to one database, for one-time set-up such as creating a study.

PostgreSQL: a transaction-level advisory lock (``pg_advisory_xact_lock``) taken in a
transaction that stays open while the block runs, on a connection of its own, so that workers
on many machines serialize. Not a session-level lock: behind a pooler in transaction mode
(PgBouncer) the server connection goes back to the pool after each transaction, and a session
lock would stay with it, held for whichever client gets that connection next. An open
transaction keeps its server connection, and its end (commit, or a dropped connection)
releases the lock.
SQLite: a file lock next to the database file (SQLite is one machine only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def database_lock(engine: sa.Engine, name: str) -> Iterator[None]:
    """Hold an exclusive lock named ``name`` for this database while the block runs."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(name)})
            yield
        return
    from filelock import FileLock

    database = engine.url.database
    path = f"{database}.{hashlib.sha256(name.encode()).hexdigest()[:12]}.lock"
    if not database or database == ":memory:":
        yield
        return
    with FileLock(path):
        yield
