"""Shared fixtures: a fresh PostgreSQL database per test, and a SQLite file URL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: ~200 examples per test in the suite; HYPOTHESIS_PROFILE=thorough runs 10,000.
settings.register_profile("default", max_examples=200, deadline=None)
settings.register_profile("thorough", max_examples=10_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The server CI and every session's machine start before the tests; override for another one.
PG_ADMIN_URL = os.environ.get(
    "HPO_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _admin_engine():  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of a fresh, empty PostgreSQL database, dropped after the test."""
    import sqlalchemy as sa

    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL of a fresh SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'hpo.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs once on SQLite and once on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hpo.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No hub downloads; the tiny base model is built once per test session in a temp cache
    (worker subprocesses inherit these variables)."""
    saved = dict(os.environ)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ.setdefault("HPO_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))
    os.environ.pop("HPO_STORAGE", None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_base():  # type: ignore[no-untyped-def]
    """The tiny base model, loaded once for the session (tests must leave it unchanged)."""
    from trainers.base_model import load_base_model
    from trainers.config import ModelConfig

    return load_base_model(ModelConfig())


def write_small_dataset(
    path: Path, n_personas: int = 20, examples: int = 16, seed: int = 0
) -> Path:
    """A small generated dataset (5 archetypes) for fast tests."""
    from trainers.tiny import write_demo_dataset

    return write_demo_dataset(path, n_personas=n_personas, examples_per_persona=examples, seed=seed)


def import_and_cluster(url: str, tmp_path: Path, name: str, k: int) -> str:
    """Import a small generated dataset under ``name`` and cluster it, as a study needs."""
    import storage
    from hpo.datasets import cluster_dataset, import_dataset
    from trainers.data import SplitConfig

    engine = storage.open_storage(url)
    path = write_small_dataset(tmp_path / f"{name}.jsonl")
    import_dataset(engine, path, name=name, split=SplitConfig(n_test=4))
    cluster_dataset(engine, name, k=k)
    return url


def store_dataset_with_one_cluster(url: str, name: str) -> None:
    """A dataset and a one-cluster clustering, stored as `hpo data import` and `cluster` do
    (without embedding anything: a study's creation needs only the rows)."""
    import storage
    from tests.storage_tests.conftest import make_personas
    from trainers.embedding import DEFAULT_EMBEDDING_MODEL

    engine = storage.open_storage(url)
    with storage.session_scope(engine) as session:
        dataset_id = storage.save_dataset(
            session, name=name, sha256="a" * 64, source=f"{name}.jsonl", personas=make_personas()
        )
        personas = storage.load_personas(session, dataset_id)
        storage.save_clustering(
            session,
            dataset_id=dataset_id,
            k=1,
            seed=0,
            embedding_model=DEFAULT_EMBEDDING_MODEL,
            silhouette=0.0,
            assignments={p.id: (0, 0.0) for p in personas},
            stats=[storage.ClusterStatRow(0, len(personas), 12, 0.0)],
        )
