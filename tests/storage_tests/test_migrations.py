"""Migrations of our tables: a database made before migrations is upgraded and keeps its rows,
on SQLite and PostgreSQL; fresh and upgraded databases match the models."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import storage
from storage import (
    StorageError,
    create_engine,
    current_revision,
    head_revision,
    init_schema,
    load_personas,
    migrations,
    open_storage,
    save_dataset,
    session_scope,
    upgrade_database,
)
from storage.migrations import LEGACY_REVISION, VERSION_TABLE, alembic_config, include_object
from storage.models import Base
from tests.storage_tests.conftest import make_personas


def _legacy_metadata() -> sa.MetaData:
    """Our tables exactly as the code before migrations declared them (frozen copy)."""
    md = sa.MetaData()

    def pk() -> sa.Column[Any]:
        return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)

    def created() -> sa.Column[Any]:
        return sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        )

    def fk(name: str, target: str, ondelete: str, nullable: bool = False) -> sa.Column[Any]:
        return sa.Column(name, sa.ForeignKey(target, ondelete=ondelete), nullable=nullable)

    def req(name: str, type_: Any) -> sa.Column[Any]:
        return sa.Column(name, type_, nullable=False)

    sa.Table("schema_version", md, req("version", sa.Integer))
    sa.Table(
        "datasets",
        md,
        pk(),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        req("sha256", sa.String(64)),
        req("source", sa.String(1000)),
        req("n_personas", sa.Integer),
        req("n_examples", sa.Integer),
        created(),
    )
    sa.Table(
        "personas",
        md,
        pk(),
        fk("dataset_id", "datasets.id", "CASCADE"),
        req("key", sa.String(200)),
        req("text", sa.Text),
        sa.UniqueConstraint("dataset_id", "key"),
    )
    sa.Table(
        "examples",
        md,
        pk(),
        fk("persona_id", "personas.id", "CASCADE"),
        req("idx", sa.Integer),
        req("context", sa.Text),
        req("reply", sa.Text),
        req("split", sa.String(8)),
        sa.UniqueConstraint("persona_id", "idx"),
    )
    sa.Table(
        "clusterings",
        md,
        pk(),
        fk("dataset_id", "datasets.id", "CASCADE"),
        req("k", sa.Integer),
        req("seed", sa.Integer),
        req("embedding_model", sa.String(200)),
        req("silhouette", sa.Float),
        created(),
        sa.UniqueConstraint("dataset_id", "k", "seed", "embedding_model"),
    )
    sa.Table(
        "cluster_stats",
        md,
        pk(),
        fk("clustering_id", "clusterings.id", "CASCADE"),
        req("cluster_id", sa.Integer),
        req("n_personas", sa.Integer),
        req("n_examples", sa.Integer),
        req("silhouette", sa.Float),
        sa.UniqueConstraint("clustering_id", "cluster_id"),
    )
    sa.Table(
        "assignments",
        md,
        pk(),
        fk("clustering_id", "clusterings.id", "CASCADE"),
        fk("persona_id", "personas.id", "CASCADE"),
        req("cluster_id", sa.Integer),
        req("silhouette", sa.Float),
        sa.UniqueConstraint("clustering_id", "persona_id"),
    )
    sa.Table(
        "artifacts",
        md,
        pk(),
        req("kind", sa.String(50)),
        req("path", sa.String(4096)),
        req("sha256", sa.String(64)),
        req("size_bytes", sa.BigInteger),
        req("study_name", sa.String(200)),
        req("trial_number", sa.Integer),
        fk("persona_id", "personas.id", "SET NULL", nullable=True),
        created(),
        sa.UniqueConstraint("kind", "study_name", "trial_number"),
    )
    sa.Table(
        "evaluation_runs",
        md,
        pk(),
        req("study_name", sa.String(200)),
        req("trial_number", sa.Integer),
        req("method", sa.String(50)),
        fk("dataset_id", "datasets.id", "CASCADE"),
        fk("clustering_id", "clusterings.id", "SET NULL", nullable=True),
        req("cluster_id", sa.Integer),
        req("split", sa.String(8)),
        req("embedding_model", sa.String(200)),
        req("status", sa.String(16)),
        sa.Column("mean_similarity", sa.Float, nullable=True),
        sa.Column("n_examples", sa.Integer, nullable=True),
        created(),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("study_name", "method", "trial_number", "cluster_id", "split"),
    )
    sa.Table(
        "evaluation_results",
        md,
        pk(),
        fk("run_id", "evaluation_runs.id", "CASCADE"),
        fk("example_id", "examples.id", "CASCADE"),
        req("generated", sa.Text),
        req("similarity", sa.Float),
        sa.UniqueConstraint("run_id", "example_id"),
    )
    sa.Table(
        "study_budget",
        md,
        sa.Column("study_name", sa.String(200), primary_key=True),
        req("n_trials", sa.Integer),
        sa.Column("claimed", sa.Integer, nullable=False, server_default="0"),
    )
    return md


def make_legacy_database(url: str) -> sa.Engine:
    """A database as the code before migrations left it: ``create_all``, marker 1, and rows
    in every table (a dataset, personas, examples, a clustering, an artifact, an evaluation)."""
    engine = create_engine(url)
    md = _legacy_metadata()
    t = md.tables
    with engine.begin() as conn:
        md.create_all(conn)
        conn.execute(t["schema_version"].insert(), [{"version": 1}])
        conn.execute(
            t["datasets"].insert(),
            [
                {
                    "name": "toy",
                    "sha256": "a" * 64,
                    "source": "toy.jsonl",
                    "n_personas": 2,
                    "n_examples": 4,
                }
            ],
        )
        conn.execute(
            t["personas"].insert(),
            [{"dataset_id": 1, "key": f"p{p}", "text": f"I am {p}."} for p in (1, 2)],
        )
        conn.execute(
            t["examples"].insert(),
            [
                {
                    "persona_id": p,
                    "idx": i,
                    "context": f"c{p}/{i}",
                    "reply": f"r{p}/{i}",
                    "split": ("train", "test")[i],
                }
                for p in (1, 2)
                for i in (0, 1)
            ],
        )
        conn.execute(
            t["clusterings"].insert(),
            [{"dataset_id": 1, "k": 2, "seed": 0, "embedding_model": "m", "silhouette": 0.5}],
        )
        conn.execute(
            t["cluster_stats"].insert(),
            [
                {
                    "clustering_id": 1,
                    "cluster_id": c,
                    "n_personas": 1,
                    "n_examples": 2,
                    "silhouette": 0.5,
                }
                for c in (0, 1)
            ],
        )
        conn.execute(
            t["assignments"].insert(),
            [
                {"clustering_id": 1, "persona_id": p, "cluster_id": p - 1, "silhouette": 0.5}
                for p in (1, 2)
            ],
        )
        conn.execute(
            t["artifacts"].insert(),
            [
                {
                    "kind": "adapter",
                    "path": "/out/a",
                    "sha256": "b" * 64,
                    "size_bytes": 2**40,
                    "study_name": "s",
                    "trial_number": 3,
                    "persona_id": 1,
                }
            ],
        )
        conn.execute(
            t["evaluation_runs"].insert(),
            [
                {
                    "study_name": "s",
                    "trial_number": 3,
                    "method": "trial",
                    "dataset_id": 1,
                    "clustering_id": 1,
                    "cluster_id": 0,
                    "split": "test",
                    "embedding_model": "m",
                    "status": "done",
                    "mean_similarity": 0.75,
                    "n_examples": 2,
                }
            ],
        )
        conn.execute(
            t["evaluation_results"].insert(),
            [
                {"run_id": 1, "example_id": e, "generated": f"g{e}", "similarity": 0.75}
                for e in (2, 4)
            ],
        )
        conn.execute(t["study_budget"].insert(), [{"study_name": "s", "n_trials": 8, "claimed": 3}])
    return engine


def all_rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of our tables (but the marker), in primary-key order."""
    tables = [t for t in _legacy_metadata().sorted_tables if t.name != "schema_version"]
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
            for t in tables
        }


def schema_differences(engine: sa.Engine) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_object": include_object,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        return compare_metadata(context, Base.metadata)


def marker(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT version FROM schema_version")).scalars())


def test_legacy_database_is_upgraded_and_keeps_its_rows(storage_url: str) -> None:
    engine = make_legacy_database(storage_url)
    before = all_rows(engine)
    assert sum(map(len, before.values())) == 17
    assert current_revision(engine) == LEGACY_REVISION

    assert upgrade_database(storage_url) == (LEGACY_REVISION, head_revision())

    assert all_rows(engine) == before
    assert current_revision(engine) == head_revision()
    assert marker(engine) == [storage.SCHEMA_VERSION]
    assert schema_differences(engine) == []
    # The rows read back through our functions, and new rows take fresh ids.
    with session_scope(engine) as session:
        assert [p.key for p in load_personas(session, 1)] == ["p1", "p2"]
        assert storage.get_artifact(session, kind="adapter", study_name="s", trial_number=3)
        assert storage.claim_ticket(session, "s")
    with session_scope(engine) as session:
        new_id = save_dataset(
            session, name="toy2", sha256="c" * 64, source="toy2.jsonl", personas=make_personas()
        )
    assert new_id == 2

    assert upgrade_database(storage_url) == (head_revision(), head_revision())
    assert marker(engine) == [storage.SCHEMA_VERSION]


def test_fresh_database_is_made_by_the_migrations(storage_url: str) -> None:
    engine = create_engine(storage_url)
    assert current_revision(engine) is None
    init_schema(engine)
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []
    assert marker(engine) == [storage.SCHEMA_VERSION]
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is None, (
            "our revision must not land in Optuna's alembic_version table"
        )


def test_upgrade_of_an_empty_database_creates_the_tables(storage_url: str) -> None:
    assert upgrade_database(storage_url) == (None, head_revision())
    assert schema_differences(create_engine(storage_url)) == []


def test_newer_database_is_refused(storage_url: str) -> None:
    engine = open_storage(storage_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(StorageError, match=r"revision '9999', newer than this code's"):
        init_schema(engine)
    with pytest.raises(StorageError, match="upgrade persona-hpo"):
        upgrade_database(storage_url)
    assert current_revision(engine) == "9999"


def test_older_postgresql_database_is_refused_at_start(pg_url: str) -> None:
    engine = make_legacy_database(pg_url)
    before = all_rows(engine)
    with pytest.raises(StorageError, match=r"revision 0001, older .*`hpo db upgrade"):
        open_storage(pg_url)
    assert not sa.inspect(engine).has_table(VERSION_TABLE), "refusing must change nothing"
    assert marker(engine) == [1]

    upgrade_database(pg_url)
    open_storage(pg_url)
    assert all_rows(engine) == before


def test_older_sqlite_database_is_upgraded_at_start(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_legacy_database(sqlite_url)
    before = all_rows(engine)
    open_storage(sqlite_url)
    assert current_revision(engine) == head_revision()
    assert all_rows(engine) == before
    assert f"from revision {LEGACY_REVISION} to {head_revision()}" in caplog.text
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_downgrade_to_base_and_up_again(storage_url: str) -> None:
    engine = open_storage(storage_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(connection=conn), "base")
    ours = set(Base.metadata.tables)
    assert not ours & set(sa.inspect(engine).get_table_names())
    assert current_revision(engine) is None
    upgrade_database(storage_url)
    assert schema_differences(engine) == []


REBUILD_PERSONAS = """
import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"


def upgrade() -> None:
    with op.batch_alter_table("personas", recreate="always") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("personas", recreate="always") as batch:
        batch.drop_column("note")
"""


def test_sqlite_table_rebuild_keeps_referencing_rows(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rebuilding ``personas`` drops it; with foreign keys on, that would cascade-delete the
    examples, assignments and evaluation results of the personas."""
    engine = make_legacy_database(sqlite_url)
    before = all_rows(engine)
    copy = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    new = f"{int(head) + 1:04d}"
    (copy / "versions" / f"{new}_rebuild_personas.py").write_text(
        REBUILD_PERSONAS.format(rev=new, down=head)
    )
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", copy)

    assert upgrade_database(sqlite_url) == (LEGACY_REVISION, new)

    assert all_rows(engine) == before
    with engine.connect() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns("personas")]
        assert columns[-1] == "note"
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_broken_migration_changes_nothing(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_legacy_database(sqlite_url)
    before = all_rows(engine)
    copy = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    new = f"{int(head) + 1:04d}"
    broken = REBUILD_PERSONAS.replace(
        'batch.add_column(sa.Column("note", sa.Text(), nullable=True))',
        'op.execute("DELETE FROM examples")\n        op.execute("SELECT * FROM no_such_table")',
    )
    (copy / "versions" / f"{new}_broken.py").write_text(broken.format(rev=new, down=head))
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", copy)

    with pytest.raises(StorageError, match="no_such_table"):
        upgrade_database(sqlite_url)

    assert all_rows(engine) == before
    assert current_revision(engine) == LEGACY_REVISION
    assert marker(engine) == [1]


def _upgrade_worker(url: str, barrier: Any) -> None:
    barrier.wait()
    upgrade_database(url)


def test_concurrent_upgrades_run_once(storage_url: str) -> None:
    engine = make_legacy_database(storage_url)
    before = all_rows(engine)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_upgrade_worker, args=(storage_url, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert current_revision(engine) == head_revision()
    assert all_rows(engine) == before
    assert marker(engine) == [storage.SCHEMA_VERSION]


def test_a_missing_table_on_sqlite_is_no_outage_and_gives_the_upgrade_hint(
    sqlite_url: str,
) -> None:
    """SQLite reports a missing table as an OperationalError, the class of its outages: it is
    not waited out as one, and every command gets the upgrade hint for it."""
    engine = open_storage(sqlite_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(connection=conn), "0004")
    with pytest.raises(StorageError) as caught, session_scope(engine) as session:
        storage.study_records(session, "s")
    assert not storage.is_disconnect(caught.value)
    hint = storage.older_schema_message(caught.value, sqlite_url)
    assert hint is not None
    assert f"revision 0004, older than this code's {head_revision()}" in hint
    assert hint.endswith("`hpo db upgrade --storage URL` (no such table: study_records)")
    upgrade_database(sqlite_url)
    assert storage.older_schema_message(caught.value, sqlite_url) is None  # at head: not ours
