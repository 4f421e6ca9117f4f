"""Study configs: packaged files, errors that name file and field, and a lossless round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from evaluators.config import EvalConfig
from hpo.study.config import (
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
    study_eval_config,
)


def _write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["demo", "cluster4", "cpu"])
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


def test_packaged_controls_values() -> None:
    """The controls' study (tests/test_controls.py): the demo's, cut to one trial at lr 1e-3."""
    config = load_config(packaged_config("controls"))
    demo = load_config(packaged_config("demo"))
    assert (config.study.name, config.study.cluster_id, config.study.n_trials) == (
        demo.study.name,
        4,
        1,
    )
    assert config.seed_trials == (
        {"epochs": 5, "batch_size": 2, "learning_rate": 1e-3, "lora_rank": 8},
    )
    assert config.train.data == demo.train.data


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


def test_a_nested_config_names_the_file_and_line(tmp_path: Path) -> None:
    """Python's parser ran out of recursion ("maximum recursion depth exceeded", no file)."""
    deep = "[" * 5000 + "1" + "]" * 5000
    path = _write(tmp_path, f'[study]\nname = "s"\ndataset = "d"\nx = {deep}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: line 4: nested deeper than 64 levels"


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


@pytest.mark.parametrize("name", ["demo", "cluster4", "cpu", "controls"])
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


# --- every field checked against its type and range, named with the file ----------------------

README_CONFIG = """\
[study]
name = "cluster4"      # also names output folders
dataset = "demo"
k = 5
cluster_id = 4
n_trials = 20
max_steps = 5000       # optional: optimizer steps of all trials together (default: no limit)

[pruner]               # median (default), percentile, successive_halving, hyperband, none
n_startup_trials = 1   # 1: the first seed config sets the bar, the other seeds can be stopped
n_warmup_steps = 1     # evaluations before a trial may be pruned
# patience = 2         # any pruner: prune only after 2 evaluations without improvement
# max_eval_loss = 5.0  # any pruner: also prune a trial whose eval_loss rises above this

[search_space.learning_rate]
type = "float"
low = 1e-5
high = 1e-3
log = true

[train.data]
max_train_per_persona = 10   # cap for small machines

[model]
base_model = "tiny"          # or a Hugging Face model path or id
"""
"""The example of docs/config.md's "Study config (TOML)" section, copied."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[study]\nn_trials = 3.7\n", "study.n_trials=3.7: expected an integer"),
        ("[study]\nn_trials = true\n", "study.n_trials=True: expected an integer"),
        ("[study]\nn_trials = 0\n", "study.n_trials=0: expected an integer in 1..1,000,000"),
        ("[study]\nn_trials = 1000001\n", "study.n_trials=1000001: expected an integer in"),
        ('[study]\nk = "five"\n', "study.k='five': expected an integer"),
        ("[train]\ntarget_modules = 5\n", "train.target_modules=5: expected a list of strings"),
        ('[train]\ntarget_modules = ["q_proj", 5]\n', "train.target_modules[1]=5: expected"),
        ("seed_trials = [5]\n", "seed_trials[0]=5: expected a table"),
        ("[train]\nlearning_rate = nan\n", "train.learning_rate=nan: expected a finite number"),
        ("[train.data]\nmax_seq_length = 1.5\n", "train.data.max_seq_length=1.5: expected"),
        ('[sampler]\nname = "grid"\n', "sampler.name='grid': expected one of tpe, random"),
        ("[sampler]\nseed = -1\n", "sampler.seed=-1: expected 0.."),
        ('[pruner]\nname = "sha"\n', "pruner.name='sha': expected one of median, percentile"),
        ("[pruner]\npercentile = 101\n", "pruner.percentile=101: expected a number in 0..100"),
        (
            '[search_space.batch_size]\ntype = "categorical"\nchoices = 5\n',
            "search_space.batch_size.choices=5: expected a list",
        ),
        (
            '[search_space.epochs]\ntype = "int"\nlow = "1"\nhigh = 5\n',
            "search_space.epochs.low='1': expected",
        ),
        (
            '[search_space.epochs]\ntype = "int"\nlow = 1.5\nhigh = 5\n',
            "search_space.epochs.low=1.5: expected an integer",
        ),
        (
            '[search_space.epochs]\ntype = "float"\nlow = 1\nhigh = 5\n',
            "search_space.epochs.type='float': train.epochs is an integer",
        ),
        (
            '[search_space.batch_size]\ntype = "categorical"\nchoices = [2, 2.5]\n',
            "search_space.batch_size.choices[1]=2.5: expected an integer",
        ),
        (
            '[search_space.lora_dropout]\ntype = "float"\nlow = 0.0\nhigh = 1.5\n',
            "search_space.lora_dropout.high=1.5: invalid lora_dropout=1.5",
        ),
        (
            "[search_space.lora_dropout]\nlow = 0.0\nhigh = 0.2\n",
            "search_space.lora_dropout.type: missing",
        ),
        (
            '[search_space.learning_rate]\ntype = "float"\nlow = 1e-5\nhigh = 1e-3\nstep = 1e-5\n'
            "log = true\n",
            "search_space.learning_rate.log=True: expected false with a step",
        ),
        (
            "[evaluation]\nmin_effect = -1\n",
            "evaluation.min_effect=-1.0: expected a number of percentage points in [0, 100)",
        ),
        ("[evaluation]\nmin_effect = 100\n", "evaluation.min_effect=100.0: expected a number"),
        ('[evaluation]\nmin_effect = "2"\n', "evaluation.min_effect='2': expected a finite"),
        ("[evaluation]\nmin_efect = 5\n", "evaluation.min_efect: unknown key; expected one of"),
        (
            "[evaluation]\ntemperature = 0.7\n",
            "evaluation.temperature=0.7: expected 1.0 with greedy decoding",
        ),
    ],
)
def test_type_and_range_errors_name_file_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {expected}"), message
    assert "\n" not in message


def test_a_config_built_in_code_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"^n_trials=3\.7: expected an integer"):
        dataclasses.replace(StudySection(), n_trials=3.7)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"train\.seed='8': expected an integer"):
        StudyConfig(train=dataclasses.replace(StudyConfig().train, seed="8"))  # type: ignore[arg-type]


def test_seed_values_match_choices_by_kind() -> None:
    with pytest.raises(ConfigError, match=r"seed_trials\[0\]\.batch_size=True: outside"):
        StudyConfig(seed_trials=({"batch_size": True},))
    space = {"lora_dropout": ParamSpec("float", low=0.0, high=0.3, step=0.1)}
    config = StudyConfig(search_space=space, seed_trials=({"lora_dropout": 0.3},))
    assert config.seed_trials == ({"lora_dropout": 0.3},)


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_an_empty_config_is_refused(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match="empty config") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_a_folder_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a folder, not a config file") as info:
        load_config(tmp_path)
    assert str(tmp_path) in str(info.value)


# --- a [search_space] table changes the default space -----------------------------------------


def test_readme_example_merges_into_the_default_space(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    assert README_CONFIG in readme, "docs/config.md's example config changed: update the copy here"
    config = load_config(_write(tmp_path, README_CONFIG))
    assert config.search_space == default_search_space()
    assert config.seed_trials == SEED_TRIALS
    assert config.study.n_trials == 20
    assert config.study.max_steps == 5000


def test_a_dimension_is_added_or_replaced_and_the_others_stay(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[search_space.lora_dropout]\ntype = "float"\nlow = 0.0\nhigh = 0.2\n'
        '[search_space.lora_rank]\ntype = "categorical"\nchoices = [8, 16, 32]\n',
    )
    space = load_config(path).search_space
    assert list(space) == ["epochs", "batch_size", "learning_rate", "lora_rank", "lora_dropout"]
    assert space["lora_rank"].choices == (8, 16, 32)
    assert space["lora_dropout"] == ParamSpec("float", low=0.0, high=0.2)


def test_exclude_drops_a_default_dimension(tmp_path: Path) -> None:
    path = _write(tmp_path, 'seed_trials = []\n[search_space]\nexclude = ["lora_rank"]\n')
    config = load_config(path)
    assert set(config.search_space) == {"epochs", "batch_size", "learning_rate"}
    assert config.seed_trials == ()
    # The stored form is the complete space: read back as it is, not merged again.
    assert config_from_dict(config.to_dict()) == config


def test_default_seeds_that_no_longer_fit_say_what_to_do(tmp_path: Path) -> None:
    path = _write(tmp_path, '[search_space]\nexclude = ["lora_rank"]\n')
    with pytest.raises(ConfigError, match=r"seed_trials\[0\]\.lora_rank.*\[\[seed_trials\]\]"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[search_space]\nexclude = ["lora_alpha"]\n', r"exclude\[0\]='lora_alpha': not a default"),
        ('[search_space]\nexclude = "lora_rank"\n', r"search_space\.exclude='lora_rank'"),
        (
            '[search_space]\nexclude = ["epochs"]\n[search_space.epochs]\ntype = "int"\n'
            "low = 1\nhigh = 2\n",
            r"search_space\.epochs: both excluded and given",
        ),
    ],
)
def test_bad_exclude_is_named(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_a_key_with_a_newline_stays_on_one_line(tmp_path: Path) -> None:
    """Found by the fuzz test: TOML's quoted keys may hold any character."""
    path = _write(tmp_path, '[study]\n"a\\nb" = 1\n[search_space."x\\ny"]\ntype = "int"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f'{path}: study."a\\nb": unknown key')
    assert "\n" not in str(info.value)


# --- [evaluation]: the study's EvalConfig, and the fields a command line replaces -----------

EVALUATION = """\
[study]
name = "margin"
dataset = "demo"

[evaluation]
min_effect = 5          # points; an integer is a fine number
do_sample = true
temperature = 0.7
"""


def test_the_evaluation_section_is_the_study_eval_config(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, EVALUATION))
    assert config.evaluation == EvalConfig(min_effect=5.0, do_sample=True, temperature=0.7)
    assert config_from_dict(config.to_dict()) == config  # stored with the study, read back
    assert load_config(packaged_config("demo")).evaluation == EvalConfig()


def test_a_study_stored_before_the_section_reads_as_the_default() -> None:
    stored = StudyConfig(study=StudySection(name="old")).to_dict()
    del stored["evaluation"]
    assert config_from_dict(stored, "study old").evaluation == EvalConfig()


def test_overrides_replace_only_the_fields_given(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, EVALUATION))
    assert study_eval_config(config) == config.evaluation
    assert study_eval_config(config, {}) == config.evaluation
    assert study_eval_config(config, {"min_effect": 1.0}) == EvalConfig(
        min_effect=1.0, do_sample=True, temperature=0.7
    )
    # temperature 0.5 is fine here, because this study samples
    assert study_eval_config(config, {"temperature": 0.5}).temperature == 0.5
    # a caller's complete EvalConfig replaces the study's as the base
    base = EvalConfig(batch_size=4)
    assert study_eval_config(config, {"min_effect": 0}, base=base) == EvalConfig(
        batch_size=4, min_effect=0.0
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"min_effect": -1.0},
            "study 'margin': evaluation.min_effect=-1.0: expected a number of percentage points "
            "in [0, 100) (the study's [evaluation], overridden by min_effect=-1.0)",
        ),
        (
            {"do_sample": False},
            "study 'margin': evaluation.temperature=0.7: expected 1.0 with greedy decoding, or "
            "do_sample=True to sample (the study's [evaluation], overridden by do_sample=False)",
        ),
        ({"min_efect": 1.0}, "study 'margin': evaluation.min_efect: unknown key"),
        ({"batch_size": True}, "study 'margin': evaluation.batch_size=True: expected an integer"),
    ],
)
def test_an_override_the_study_refuses_names_study_field_and_override(
    tmp_path: Path, overrides: dict[str, object], expected: str
) -> None:
    config = load_config(_write(tmp_path, EVALUATION))
    with pytest.raises(ConfigError) as info:
        study_eval_config(config, overrides, where="study 'margin'")
    assert str(info.value).startswith(expected), info.value
