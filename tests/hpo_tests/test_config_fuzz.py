"""Property tests of the study config reader: any TOML either loads or gives one ConfigError.

The suite runs ~200 examples per test (profile registered in tests/conftest.py). A thorough run
of 10,000 examples per test:

    HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/hpo_tests/test_config_fuzz.py -q
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluators.config import EvalConfig
from hpo.study.config import (
    EXCLUDE_KEY,
    TUNABLE,
    ConfigError,
    ParamSpec,
    StudyConfig,
    StudySection,
    config_from_dict,
    default_search_space,
    load_config,
)
from hpo.study.strategies import PrunerConfig, SamplerConfig
from trainers.config import DataConfig, ModelConfig, TrainConfig

WHERE = "fuzz.toml"

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
    st.text(max_size=12),
    st.sampled_from(["tpe", "random", "median", "percentile", "none", "int", "float", "tiny"]),
    st.datetimes(min_value=dt.datetime(1970, 1, 1)),
)
"""What a TOML value can be, weighted towards values that pass some checks."""
toml_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _plausible(value: Any) -> st.SearchStrategy[Any]:
    """A field's default or something near it, so that many examples get past the checks."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(min_value=value - 2, max_value=value + 3)
    if isinstance(value, float):
        return st.floats(min_value=0, max_value=value * 2 + 1e-3)
    if isinstance(value, tuple):
        return st.lists(st.sampled_from(value), min_size=1, max_size=3) if value else st.just([])
    return st.just(value)


def sometimes(strategy: st.SearchStrategy[dict[str, Any]], key: str) -> Any:
    """The tables of ``strategy``, one in ten with a stray ``key`` added."""
    return st.tuples(strategy, st.integers(0, 9), toml_values).map(
        lambda t: {**t[0], key: t[2]} if t[1] == 9 else t[0]
    )


def table(cls: type, nested: dict[str, st.SearchStrategy[Any]] | None = None) -> Any:
    """Tables of real field names of ``cls`` (and a stray key now and then)."""
    instance = cls() if cls is not ParamSpec else ParamSpec("int", low=1, high=5)
    values = {
        f.name: st.one_of(_plausible(getattr(instance, f.name)), toml_values)
        for f in dataclasses.fields(cls)
    }
    values.update(nested or {})
    tables = st.lists(st.sampled_from(sorted(values)), max_size=len(values), unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: values[k] for k in keys})
    )
    return sometimes(tables, "unknown_key")


param_specs = st.one_of(
    st.builds(
        lambda t, low, high, log: {"type": t, "low": low, "high": high, "log": log},
        st.sampled_from(["int", "float"]),
        st.integers(-2, 6) | st.floats(-1, 1),
        st.integers(-2, 8) | st.floats(0, 2),
        st.booleans(),
    ),
    st.fixed_dictionaries(
        {"type": st.just("categorical"), "choices": st.lists(scalars, max_size=4)}
    ),
    table(ParamSpec),
    toml_values,
)
dimension_names = st.sampled_from([*TUNABLE, "seed", "max_grad_norm", "x"])
search_spaces = st.dictionaries(dimension_names, param_specs, max_size=4).flatmap(
    lambda space: st.one_of(
        st.just(space),
        st.lists(st.sampled_from([*default_search_space(), "x"]), max_size=3).map(
            lambda excluded: {**space, EXCLUDE_KEY: excluded}
        ),
        toml_values.map(lambda bad: {**space, EXCLUDE_KEY: bad}),
    )
)
seed_trials = st.lists(
    st.dictionaries(
        dimension_names,
        st.one_of(st.sampled_from([1, 2, 4, 5, 8, 16, 2e-4, 0.1]), toml_values),
        max_size=4,
    )
    | toml_values,
    max_size=3,
)
configs = sometimes(
    st.fixed_dictionaries(
        {},
        optional={
            "study": table(StudySection) | toml_values,
            "sampler": table(SamplerConfig),
            "pruner": table(PrunerConfig),
            "search_space": search_spaces | toml_values,
            "seed_trials": seed_trials | toml_values,
            "train": table(TrainConfig, {"data": table(DataConfig) | toml_values}),
            "model": table(ModelConfig),
            "evaluation": table(EvalConfig) | toml_values,
        },
    ),
    "studdy",
)


def _assert_one_line(exc: ConfigError) -> None:
    message = str(exc)
    assert message.startswith(f"{WHERE}: "), message
    assert "\n" not in message and len(message) < 600, message


@given(configs)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_config_loads_or_gives_one_config_error(data: dict[str, Any]) -> None:
    try:
        config = config_from_dict(data, WHERE, merge_defaults=True)
    except ConfigError as exc:
        _assert_one_line(exc)
        return
    # What loads is stored as JSON and read back unchanged by every worker.
    assert isinstance(config, StudyConfig)
    assert config_from_dict(config.to_dict(), "stored") == config


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_any_file_loads_or_gives_one_config_error(tmp_path_factory: Any, text: str | bytes) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / WHERE
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(text)
    try:
        load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
