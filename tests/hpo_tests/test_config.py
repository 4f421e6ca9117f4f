"""Study configs: packaged files, errors that name file and field, and a lossless round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hpo.config import (
    SEED_TRIALS,
    TUNABLE,
    ConfigError,
    ParamSpec,
    StudyConfig,
    StudySection,
    config_from_dict,
    default_search_space,
    load_config,
    packaged_config,
)


def _write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["demo", "cluster4"])
def test_packaged_configs_load(name: str) -> None:
    config = load_config(packaged_config(name))
    assert isinstance(config, StudyConfig)
    assert config.study.dataset == "demo"
    assert config.study.k == 5 and config.study.cluster_id == 4
    assert config.seed_trials == SEED_TRIALS


def test_packaged_demo_values() -> None:
    config = load_config(packaged_config("demo"))
    assert config.study.name == "demo-cluster4"
    assert config.study.n_trials == 12
    assert config.pruner.n_warmup_steps == 2
    assert config.train.data.max_train_per_persona == 10
    assert config.train.data.max_val_per_persona == 2


def test_unknown_packaged_config() -> None:
    with pytest.raises(ConfigError, match="nosuch"):
        packaged_config("nosuch")


def test_unknown_key_names_field_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[study]\nnam = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "study.nam" in message
    assert str(path) in message


def test_unknown_section_names_it(tmp_path: Path) -> None:
    path = _write(tmp_path, '[studdy]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"studdy") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_unknown_nested_train_data_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "[train.data]\nmax_train = 3\n")
    with pytest.raises(ConfigError, match=r"train\.data\.max_train") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[study\nname = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_non_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[study]\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="no such config file") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_seed_trial_outside_the_space(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[[seed_trials]]
epochs = 9
batch_size = 2
learning_rate = 2e-4
lora_rank = 8
""",
    )
    with pytest.raises(ConfigError, match=r"seed_trials\[0\]\.epochs=9") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_seed_trial_with_a_parameter_not_searched(tmp_path: Path) -> None:
    path = _write(tmp_path, "[[seed_trials]]\nepochs = 2\n[[seed_trials]]\nlora_dropout = 0.1\n")
    with pytest.raises(ConfigError, match=r"seed_trials\[1\]\.lora_dropout"):
        load_config(path)


def test_search_space_on_a_non_tunable_param(tmp_path: Path) -> None:
    path = _write(tmp_path, '[search_space.seed]\ntype = "int"\nlow = 0\nhigh = 3\n')
    with pytest.raises(ConfigError, match=r"search_space\.seed.*not tunable") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_invalid_param_spec_names_the_dimension(tmp_path: Path) -> None:
    path = _write(
        tmp_path, '[search_space.learning_rate]\ntype = "float"\nlow = 1e-3\nhigh = 1e-5\n'
    )
    with pytest.raises(ConfigError, match=r"search_space\.learning_rate.*low < high"):
        load_config(path)


@pytest.mark.parametrize(("k", "cluster_id"), [(5, 5), (3, 7), (2, -1)])
def test_cluster_id_must_be_below_k(tmp_path: Path, k: int, cluster_id: int) -> None:
    path = _write(tmp_path, f"[study]\nk = {k}\ncluster_id = {cluster_id}\n")
    with pytest.raises(ConfigError, match=r"study\.cluster_id") as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "x" * 101])
def test_unsafe_study_names_are_rejected(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, f'[study]\nname = "{name}"\n')
    with pytest.raises(ConfigError, match="study name") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_invalid_train_value_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "[train]\nepochs = 0\n")
    with pytest.raises(ConfigError, match=r"train.*epochs=0"):
        load_config(path)


@pytest.mark.parametrize("name", ["demo", "cluster4"])
def test_round_trip_through_dict(name: str) -> None:
    config = load_config(packaged_config(name))
    assert config_from_dict(config.to_dict()) == config


def test_round_trip_of_a_customised_config() -> None:
    space = default_search_space()
    space["lora_dropout"] = ParamSpec("float", low=0.0, high=0.3)
    config = StudyConfig(
        study=StudySection(name="custom", k=3, cluster_id=2, n_trials=4),
        search_space=space,
        seed_trials=({"epochs": 2, "lora_dropout": 0.1},),
    )
    config = dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, target_modules=("q_proj", "v_proj"), lora_alpha=32),
    )
    again = config_from_dict(config.to_dict())
    assert again == config
    assert again.train.target_modules == ("q_proj", "v_proj")


def test_seed_trials_are_the_original_plan() -> None:
    assert SEED_TRIALS == (
        {"epochs": 5, "batch_size": 2, "learning_rate": 5e-4, "lora_rank": 8},
        {"epochs": 5, "batch_size": 2, "learning_rate": 2e-4, "lora_rank": 8},
        {"epochs": 5, "batch_size": 2, "learning_rate": 2e-4, "lora_rank": 16},
    )
    assert StudyConfig().seed_trials == SEED_TRIALS
    space = default_search_space()
    assert set(space) == {"epochs", "batch_size", "learning_rate", "lora_rank"}
    assert set(space) <= set(TUNABLE)
    for seed in SEED_TRIALS:
        assert all(space[name].contains(value) for name, value in seed.items())


@pytest.mark.parametrize("value", [2.5, True])
def test_int_dimension_rejects_non_integer_seed_values(value: object) -> None:
    with pytest.raises(ValueError, match=r"seed_trials\[0\]\.epochs"):
        StudyConfig(seed_trials=({"epochs": value},))
