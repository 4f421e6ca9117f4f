"""Alembic migrations of our tables; Optuna migrates its own tables separately.

Our revision is kept in the table ``hpo_alembic_version`` (``VERSION_TABLE``), never in
``alembic_version``, which Optuna's own migrations use in the same database. Migrations run
programmatically on a connection that :mod:`storage.engine` opens, inside its transaction and
under its schema lock; no ``alembic.ini`` is needed. Revisions are numbered ``0001``,
``0002``, ...: ``0001`` is the schema as the code before migrations created it (a database
made by that code is recognized by its ``schema_version`` marker and stamped ``0001``),
``0002`` retires that marker.

Adding a revision (say a new table in ``storage/models.py``):

1. Change the models.
2. Add ``versions/NNNN_what_changes.py`` with the next number: ``revision = "NNNN"``,
   ``down_revision`` = the previous number, and ``upgrade()`` / ``downgrade()`` written with
   ``alembic.op``. Spell the columns out in the revision; never import the models there, since
   they will change again. To draft it from the models, upgrade a scratch database to head and
   run ``alembic.command.revision(alembic_config(url="sqlite:///scratch.db"), "what changes",
   rev_id="NNNN", autogenerate=True)``; then read and fix the draft.
3. Change existing tables inside ``with op.batch_alter_table(name) as batch:`` so that SQLite,
   whose ``ALTER TABLE`` cannot change or drop most things, gets a table rebuild. Foreign keys
   are off while SQLite migrates (and checked before the commit), so rebuilding a table keeps
   the rows that reference it. Give new constraints and indexes explicit names.
4. ``tests/storage_tests/test_migrations.py`` checks that a fresh database and one upgraded
   from ``0001`` both match the models; a model changed without a revision fails there.

At start (:func:`storage.init_schema`) a database without our tables is created by running
every revision; a database at an older revision is upgraded on SQLite and refused on
PostgreSQL (``hpo db upgrade`` upgrades it); a revision unknown to this code is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from storage.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

VERSION_TABLE = "hpo_alembic_version"
"""Our Alembic version table (Optuna's is ``alembic_version``)."""
LEGACY_REVISION = "0001"
"""The revision of a database made before migrations (``schema_version`` marker 1)."""
LEGACY_MARKER_TABLE = "schema_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(*, connection: sa.Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config for our migrations, on ``connection`` or (for developers) ``url``.

    Args:
        connection: A connection in a transaction; the migrations run inside that transaction.
        url: A database URL, used when no connection is given (to autogenerate a revision).

    Returns:
        The config; ``env.py`` reads the connection from ``config.attributes``.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision of our tables that this code knows, e.g. ``"0002"``."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package ships its revisions
        raise StorageError(f"no migration revisions found in {MIGRATIONS_DIR / 'versions'}")
    return head


def known_revisions() -> list[str]:
    """Every revision this code knows, oldest first."""
    return [script.revision for script in reversed(list(_script().walk_revisions()))]


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave tables that are not ours (Optuna's, version tables) out of autogenerate."""
    return not (type_ == "table" and reflected and compare_to is None)


def stored_revision(conn: sa.Connection) -> str | None:
    """The revision of our tables in the database on ``conn``.

    Args:
        conn: An open connection.

    Returns:
        The revision in ``hpo_alembic_version``; ``LEGACY_REVISION`` for a database made
        before migrations (our ``schema_version`` marker but no version table); ``None`` when
        the database has none of our tables.

    Raises:
        StorageError: If the version table holds several revisions, or a marker other than 1
            stands without a version table.
    """
    inspector = sa.inspect(conn)
    if inspector.has_table(VERSION_TABLE):
        versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        stored = sorted(versions)
        if len(stored) > 1:
            raise StorageError(
                f"{VERSION_TABLE} holds several revisions {stored}; this code knows one line "
                f"of revisions {known_revisions()}"
            )
        if stored:
            return str(stored[0])
    if inspector.has_table(LEGACY_MARKER_TABLE):
        marker = conn.execute(sa.text(f"SELECT max(version) FROM {LEGACY_MARKER_TABLE}")).scalar()
        if marker in (None, 1):
            return LEGACY_REVISION
        raise StorageError(
            f"{LEGACY_MARKER_TABLE} marker is {marker} but {VERSION_TABLE} is missing or "
            "empty: the database was not made by a known persona-hpo"
        )
    return None


def upgrade(conn: sa.Connection) -> None:
    """Upgrade our tables on ``conn`` to head inside the caller's transaction.

    A database made before migrations is stamped ``LEGACY_REVISION`` first; a database
    without our tables gets every revision. The caller holds the schema lock and checks that
    the stored revision is known.

    Args:
        conn: A connection in a transaction.

    Raises:
        StorageError: If Alembic refuses (e.g. a revision file is broken); the caller's
            transaction then rolls back.
    """
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config(connection=conn)
    try:
        if stored_revision(conn) == LEGACY_REVISION and not _has_version_row(conn):
            command.stamp(config, LEGACY_REVISION)
        command.upgrade(config, "head")
    except CommandError as exc:
        raise StorageError(f"migration of our tables failed: {exc}") from exc


def _has_version_row(conn: sa.Connection) -> bool:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return False
    return conn.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() != 0
