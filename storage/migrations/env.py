"""Alembic environment of our tables (see :mod:`storage.migrations`).

At run time the connection comes from ``config.attributes["connection"]``, already in a
transaction under our schema lock, so every revision runs in that one transaction. Without
one (a developer autogenerating a revision) it connects to ``sqlalchemy.url``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from storage.errors import StorageError
from storage.migrations import VERSION_TABLE, include_object
from storage.models import Base


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_from_config() -> None:
    config = context.config
    if context.is_offline_mode():
        raise StorageError("our migrations run on a live database: use `hpo db upgrade`")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise StorageError("alembic config has neither a connection nor sqlalchemy.url")
    from storage.engine import create_engine

    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()


_run_from_config()
