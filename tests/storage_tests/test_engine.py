from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import (
    DEFAULT_STORAGE_URL,
    SCHEMA_VERSION,
    StorageError,
    create_engine,
    default_storage_url,
    init_schema,
    open_storage,
    session_scope,
)
from storage.models import schema_version


def _init_worker(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    open_storage(url)


def test_concurrent_init_schema(storage_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_init_worker, args=(storage_url, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    engine = create_engine(storage_url)
    with engine.connect() as conn:
        versions = conn.execute(sa.select(schema_version.c.version)).scalars().all()
    assert versions == [SCHEMA_VERSION]
    assert {"datasets", "study_budget", "evaluation_results"} <= set(
        sa.inspect(engine).get_table_names()
    )


def test_newer_schema_refused(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hpo_alembic_version SET version_num = '9999'"))
    with pytest.raises(StorageError, match="newer than this code"):
        init_schema(engine)


def test_engine_is_cached(storage_url: str) -> None:
    assert create_engine(storage_url) is create_engine(storage_url)


@pytest.mark.parametrize(
    ("url", "match"),
    [("not a url", "cannot parse"), ("mysql://u:secret@h/db", "unsupported storage backend")],
)
def test_bad_urls(url: str, match: str) -> None:
    with pytest.raises(StorageError, match=match) as info:
        create_engine(url)
    assert "secret" not in str(info.value)


def test_postgresql_defaults_to_psycopg() -> None:
    engine = create_engine("postgresql://u:pw@127.0.0.1:1/db")
    assert engine.dialect.driver == "psycopg"


def test_default_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    assert default_storage_url() == DEFAULT_STORAGE_URL
    monkeypatch.setenv("HPO_STORAGE", "sqlite:///x.db")
    assert default_storage_url() == "sqlite:///x.db"


def test_sqlite_url_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    from storage import InvalidURLError, normalize_url

    url = f"sqlite:///{tmp_path / 'sub' / 'dir' / 'hpo.db'}"
    for use in (open_storage, normalize_url):
        with pytest.raises(InvalidURLError, match="does not exist") as info:
            use(url)
        assert str(tmp_path / "sub" / "dir") in str(info.value)
    assert not (tmp_path / "sub").exists()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000


def test_session_scope_wraps_and_rolls_back(engine: sa.Engine) -> None:
    with (
        pytest.raises(StorageError, match="database error") as info,
        session_scope(engine) as session,
    ):
        session.execute(sa.text("INSERT INTO study_budget VALUES ('s', 1, 0)"))
        session.execute(sa.text("SELECT * FROM no_such_table"))
    assert isinstance(info.value.__cause__, sa.exc.SQLAlchemyError)
    with session_scope(engine) as session:
        assert session.execute(sa.text("SELECT count(*) FROM study_budget")).scalar() == 0
