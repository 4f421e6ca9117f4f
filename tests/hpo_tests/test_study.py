"""Study creation: race-safe on a fresh database, seeds once, refusal of a different config."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path

import pytest

import storage
from hpo.config import ParamSpec, StudyConfig, StudySection
from hpo.study import StudyConfigMismatch, create_study, load_study
from tests.conftest import import_and_cluster


def with_data(url: str, tmp_path: Path) -> str:
    """A small dataset named 'demo', clustered with k=5, as the default study config needs."""
    import_and_cluster(url, tmp_path, "demo", k=5)
    storage.dispose_engines()
    return url


def _create(url: str, barrier: object) -> str:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        create_study(StudyConfig(study=StudySection(name="race", n_trials=7)), url)
    except Exception as exc:  # reported to the parent
        return f"{type(exc).__name__}: {exc}"
    return "ok"


@pytest.mark.postgres
def test_concurrent_create_on_fresh_postgresql(pg_url: str, tmp_path: Path) -> None:
    with_data(pg_url, tmp_path)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(4)
    with ctx.Pool(4) as pool:
        results = pool.starmap(_create, [(pg_url, barrier)] * 4)
    assert results == ["ok"] * 4
    study, config = load_study(pg_url, "race")
    waiting = study.get_trials(deepcopy=False)
    assert len(waiting) == 3, "the seed configs must be enqueued exactly once"
    assert config.study.n_trials == 7


def test_concurrent_create_on_fresh_sqlite(tmp_path: Path) -> None:
    url = with_data(f"sqlite:///{tmp_path / 'race.db'}", tmp_path)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(3)
    with ctx.Pool(3) as pool:
        results = pool.starmap(_create, [(url, barrier)] * 3)
    assert results == ["ok"] * 3
    study, _ = load_study(url, "race")
    assert len(study.get_trials(deepcopy=False)) == 3


def test_refuses_a_different_search_space(storage_url: str, tmp_path: Path) -> None:
    with_data(storage_url, tmp_path)
    config = StudyConfig(study=StudySection(name="refuse"))
    create_study(config, storage_url)
    space = dict(config.search_space)
    space["lora_rank"] = ParamSpec("categorical", choices=(8, 16, 32))
    with pytest.raises(StudyConfigMismatch, match=r"search_space\.lora_rank"):
        create_study(dataclasses.replace(config, search_space=space), storage_url)


def test_load_unknown_study_names_it(sqlite_url: str, tmp_path: Path) -> None:
    with_data(sqlite_url, tmp_path)
    create_study(StudyConfig(study=StudySection(name="known")), sqlite_url)
    with pytest.raises(storage.NotFoundError, match="nosuch"):
        load_study(sqlite_url, "nosuch")
