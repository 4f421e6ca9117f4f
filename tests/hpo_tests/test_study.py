"""Study creation: race-safe on a fresh database, seeds once, refusal of a different config."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path

import pytest

from hpo.config import ParamSpec, StudyConfig, StudySection
from hpo.study import StudyConfigMismatch, create_study, load_study


def _create(url: str, barrier: object) -> str:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        create_study(StudyConfig(study=StudySection(name="race", n_trials=7)), url)
    except Exception as exc:  # reported to the parent
        return f"{type(exc).__name__}: {exc}"
    return "ok"


@pytest.mark.postgres
def test_concurrent_create_on_fresh_postgresql(pg_url: str) -> None:
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
    url = f"sqlite:///{tmp_path / 'race.db'}"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(3)
    with ctx.Pool(3) as pool:
        results = pool.starmap(_create, [(url, barrier)] * 3)
    assert results == ["ok"] * 3
    study, _ = load_study(url, "race")
    assert len(study.get_trials(deepcopy=False)) == 3


def test_refuses_a_different_search_space(storage_url: str) -> None:
    config = StudyConfig(study=StudySection(name="refuse"))
    create_study(config, storage_url)
    space = dict(config.search_space)
    space["lora_rank"] = ParamSpec("categorical", choices=(8, 16, 32))
    with pytest.raises(StudyConfigMismatch, match="search_space.lora_rank"):
        create_study(dataclasses.replace(config, search_space=space), storage_url)


def test_load_unknown_study_names_it(sqlite_url: str) -> None:
    create_study(StudyConfig(study=StudySection(name="known")), sqlite_url)
    with pytest.raises(KeyError, match="nosuch"):
        load_study(sqlite_url, "nosuch")
