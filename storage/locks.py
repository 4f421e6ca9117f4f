"""A cross-process lock scoped to one database, for one-time set-up such as creating a study.

PostgreSQL: a session-level advisory lock, so workers on many machines serialize.
SQLite: a file lock next to the database file (SQLite is one machine only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def database_lock(engine: sa.Engine, name: str) -> Iterator[None]:
    """Hold an exclusive lock named ``name`` for this database while the block runs."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key(name)})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(name)})
                conn.commit()
        return
    from filelock import FileLock

    database = engine.url.database
    path = f"{database}.{hashlib.sha256(name.encode()).hexdigest()[:12]}.lock"
    if not database or database == ":memory:":
        yield
        return
    with FileLock(path):
        yield
