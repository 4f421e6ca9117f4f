"""Study creation: race-safe on a fresh database, all or nothing, seeds once, refusal of a
different config."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path

import optuna
import pytest

import storage
from hpo.study.config import ConfigError, ParamSpec, StudyConfig, StudySection
from hpo.study.creation import SEED_ATTR, StudyConfigMismatch, create_study, load_study
from hpo.study.records import CONFIG_REF_ATTR
from tests.conftest import import_and_cluster
from tests.hpo_tests.test_config import README_CONFIG
from trainers.config import ModelConfig


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


def _names(url: str) -> list[str]:
    from hpo.study.creation import optuna_storage

    return [s.study_name for s in optuna.get_all_study_summaries(optuna_storage(url))]


def _budget(url: str, name: str) -> tuple[int, int] | None:
    with storage.session_scope(storage.create_engine(url)) as session:
        return storage.budget(session, name)


def test_a_failure_part_way_leaves_nothing(
    storage_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_data(storage_url, tmp_path)
    config = StudyConfig(study=StudySection(name="undo", n_trials=5))
    enqueue = optuna.Study.enqueue_trial
    calls: list[int] = []

    def fail_on_the_second(study: optuna.Study, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure")
        enqueue(study, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(optuna.Study, "enqueue_trial", fail_on_the_second)
    with pytest.raises(RuntimeError, match="injected failure"):
        create_study(config, storage_url)
    assert "undo" not in _names(storage_url)
    assert _budget(storage_url, "undo") is None

    monkeypatch.setattr(optuna.Study, "enqueue_trial", enqueue)
    study = create_study(config, storage_url)
    assert len(study.get_trials(deepcopy=False)) == 3
    assert _budget(storage_url, "undo") == (5, 0)


def test_a_study_left_half_created_is_created_afresh(storage_url: str, tmp_path: Path) -> None:
    """As if a create was killed after its first seed trial: no config stored yet."""
    from hpo.study.creation import optuna_storage

    with_data(storage_url, tmp_path)
    left = optuna.create_study(study_name="killed", storage=optuna_storage(storage_url))
    left.enqueue_trial({"epochs": 5}, user_attrs={SEED_ATTR: True})
    with storage.session_scope(storage.create_engine(storage_url)) as session:
        storage.set_budget(session, "killed", 9)
        assert storage.claim_ticket(session, "killed")
    study = create_study(StudyConfig(study=StudySection(name="killed", n_trials=4)), storage_url)
    assert len(study.get_trials(deepcopy=False)) == 3
    assert CONFIG_REF_ATTR in study.user_attrs
    assert _budget(storage_url, "killed") == (4, 0)


def test_a_foreign_study_with_trials_is_not_touched(sqlite_url: str, tmp_path: Path) -> None:
    from hpo.study.creation import optuna_storage

    with_data(sqlite_url, tmp_path)
    foreign = optuna.create_study(study_name="theirs", storage=optuna_storage(sqlite_url))
    foreign.add_trial(optuna.trial.create_trial(value=1.0))
    with pytest.raises(StudyConfigMismatch, match="not created by `hpo study create`"):
        create_study(StudyConfig(study=StudySection(name="theirs")), sqlite_url)
    assert len(optuna.load_study(study_name="theirs", storage=sqlite_url).trials) == 1


def test_another_n_trials_is_refused_and_the_stored_one_kept(
    storage_url: str, tmp_path: Path
) -> None:
    with_data(storage_url, tmp_path)
    config = StudyConfig(study=StudySection(name="keep", n_trials=12))
    create_study(config, storage_url)
    create_study(config, storage_url)  # the same config again: fine, nothing duplicated
    more = dataclasses.replace(config, study=dataclasses.replace(config.study, n_trials=20))
    with pytest.raises(StudyConfigMismatch, match=r"study\.n_trials: stored 12, given 20.*kept"):
        create_study(more, storage_url)
    study, stored = load_study(storage_url, "keep")
    assert stored.study.n_trials == 12
    assert _budget(storage_url, "keep") == (12, 0)
    assert len(study.get_trials(deepcopy=False)) == 3


def test_a_lost_budget_is_restored(sqlite_url: str, tmp_path: Path) -> None:
    with_data(sqlite_url, tmp_path)
    config = StudyConfig(study=StudySection(name="nobudget", n_trials=6))
    create_study(config, sqlite_url)
    with storage.session_scope(storage.create_engine(sqlite_url)) as session:
        storage.delete_budget(session, "nobudget")
    create_study(config, sqlite_url)
    assert _budget(sqlite_url, "nobudget") == (6, 0)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_local_base_model_is_checked_before_anything_is_written(
    sqlite_url: str, tmp_path: Path, make: str
) -> None:
    with_data(sqlite_url, tmp_path)
    folder = tmp_path / "my-model"
    if make == "empty":
        folder.mkdir()
    config = StudyConfig(
        study=StudySection(name="local"), model=ModelConfig(base_model=str(folder))
    )
    with pytest.raises(ConfigError, match=r"model\.base_model=.*my-model"):
        create_study(config, sqlite_url)
    assert "local" not in _names(sqlite_url)
    assert _budget(sqlite_url, "local") is None


def test_cli_create_with_the_readme_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.cli import main

    url = with_data(f"sqlite:///{tmp_path / 'readme.db'}", tmp_path)
    path = tmp_path / "cluster4.toml"
    path.write_text(README_CONFIG, encoding="utf-8")
    assert main(["study", "create", "--config", str(path), "--storage", url]) == 0
    assert "study 'cluster4' ready: 20 trials" in capsys.readouterr().out
    study, config = load_study(url, "cluster4")
    assert set(config.search_space) == {"epochs", "batch_size", "learning_rate", "lora_rank"}
    assert len(study.get_trials(deepcopy=False)) == 3


def test_cli_bad_n_trials_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.cli import main

    url = with_data(f"sqlite:///{tmp_path / 'bad.db'}", tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text('[study]\nname = "bad"\nn_trials = 3.7\n', encoding="utf-8")
    assert main(["study", "create", "--config", str(path), "--storage", url]) == 2
    assert f"{path}: study.n_trials=3.7: expected an integer" in capsys.readouterr().err
    assert "bad" not in _names(url)
    assert _budget(url, "bad") is None


def test_a_sqlite_url_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'hpo.db'}"
    with pytest.raises(storage.InvalidURLError, match="does not exist"):
        create_study(StudyConfig(study=StudySection(name="nowhere")), url)
    assert not (tmp_path / "nowhere").exists()


def test_the_config_is_a_study_record_and_old_studies_still_load(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A new study points at its config in ``study_records`` (its attributes stay short); a
    study created before keeps the whole config in ``hpo_config`` and is read, listed and
    raised as before (the raise writes the new form, which then wins)."""
    from hpo.study.creation import optuna_storage, raise_budget
    from hpo.study.queries import list_studies, study_status
    from hpo.study.records import CONFIG_ATTR, CONFIG_RECORD

    with_data(sqlite_url, tmp_path)
    config = StudyConfig(study=StudySection(name="new", n_trials=4))
    study = create_study(config, sqlite_url)
    assert CONFIG_ATTR not in study.user_attrs
    assert len(repr(study.user_attrs)) < 100
    with storage.session_scope(storage.create_engine(sqlite_url)) as session:
        record = storage.study_record(session, "new", CONFIG_RECORD)
    assert record is not None and record[0] == config.to_dict()
    assert record[1].startswith(study.user_attrs[CONFIG_REF_ATTR])
    assert load_study(sqlite_url, "new")[1] == config

    old_config = StudyConfig(study=StudySection(name="old", n_trials=3))
    old = optuna.create_study(study_name="old", storage=optuna_storage(sqlite_url))
    old.set_user_attr(CONFIG_ATTR, old_config.to_dict())
    with storage.session_scope(storage.create_engine(sqlite_url)) as session:
        storage.set_budget(session, "old", 3)
    assert load_study(sqlite_url, "old")[1] == old_config
    assert create_study(old_config, sqlite_url).study_name == "old"  # the same config: loaded
    assert study_status(sqlite_url, "old").n_trials_target == 3
    targets = {row.name: row.n_trials_target for row in list_studies(sqlite_url)}
    assert targets == {"new": 4, "old": 3}
    assert raise_budget(sqlite_url, "old", 5).study.n_trials == 5
    assert load_study(sqlite_url, "old")[1].study.n_trials == 5
    targets = {row.name: row.n_trials_target for row in list_studies(sqlite_url)}
    assert targets == {"new": 4, "old": 5}
