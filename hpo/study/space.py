"""The search space: its dimensions (:class:`ParamSpec`), the default space and seed trials,
and a trial's suggestions (turned into a TrainConfig by :func:`hpo.study.config.train_config_for`).

A study config (:mod:`hpo.study.config`) starts from :func:`default_search_space`; its
``[search_space]`` table replaces or adds dimensions (:func:`merge_search_space`), and every
dimension must tune a tunable TrainConfig field with values that field accepts
(:func:`check_dimension`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.study.config_check import (
    ConfigError,
    check_fields,
    child,
    convert,
    field_hints,
    require,
    same_choice,
    short,
    toml_key,
)
from trainers.config import TrainConfig, tunable_fields

if TYPE_CHECKING:
    import optuna

TUNABLE = tunable_fields()
"""TrainConfig fields a search space may tune (marked on the fields in trainers/config.py)."""

PARAM_TYPES = ("float", "int", "categorical")
EXCLUDE_KEY = "exclude"
"""``[search_space]`` key listing the default dimensions to drop."""


@dataclass(frozen=True)
class ParamSpec:
    """One dimension of the search space (Optuna's ``suggest_int``, ``suggest_float`` or
    ``suggest_categorical``)."""

    type: str
    """``float``, ``int`` or ``categorical``."""
    low: float | None = None
    """Lowest value (int and float); an integer for ``int``."""
    high: float | None = None
    """Highest value (int and float), included; above ``low``."""
    log: bool = False
    """Sample on a log scale (needs ``low > 0``; not with ``step``)."""
    step: float | None = None
    """Grid step (int and float); an integer for ``int``."""
    choices: tuple[Any, ...] | None = None
    """The values of a categorical dimension: strings, numbers or booleans."""

    def __post_init__(self) -> None:
        check_fields(self)
        require(self.type in PARAM_TYPES, "type", self.type, f"one of {', '.join(PARAM_TYPES)}")
        if self.type == "categorical":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                require(value is None, name, value, "none for categorical (it takes choices)")
            require(bool(self.choices), "choices", self.choices, "a non-empty list")
            for i, choice in enumerate(self.choices or ()):
                require(
                    isinstance(choice, str | int | float)
                    and not (isinstance(choice, float) and not math.isfinite(choice)),
                    f"choices[{i}]",
                    choice,
                    "a string, a finite number or true/false",
                )
            return
        require(self.choices is None, "choices", self.choices, f"none for type {self.type!r}")
        number = "an integer" if self.type == "int" else "a finite number"
        for name in ("low", "high"):
            value = getattr(self, name)
            require(value is not None, name, value, f"{number} (required for {self.type!r})")
            require(self._is_number(value), name, value, number)
        assert self.low is not None and self.high is not None
        if not self.low < self.high:
            raise ConfigError(f"low={self.low}, high={self.high}: expected low < high")
        if self.step is not None:
            require(self._is_number(self.step) and self.step > 0, "step", self.step, "> 0")
            require(not self.log, "log", self.log, "false with a step (Optuna has no log grid)")
        if self.log:
            if self.type == "int":
                require(self.low >= 1, "low", self.low, ">= 1 on a log scale")
            else:
                require(self.low > 0, "low", self.low, "> 0 on a log scale")

    def _is_number(self, value: Any) -> bool:
        if self.type == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )

    def bounds(self) -> tuple[tuple[str, Any], ...]:
        """The values that bound this dimension, named: low and high, or every choice."""
        if self.type == "categorical":
            return tuple((f"choices[{i}]", c) for i, c in enumerate(self.choices or ()))
        return (("low", self.low), ("high", self.high))

    def contains(self, value: Any) -> bool:
        """Whether a value lies in this dimension (seed configs must)."""
        if self.type == "categorical":
            return any(same_choice(value, c) for c in self.choices or ())
        assert self.low is not None and self.high is not None
        if not self._is_number(value):
            return False
        if self.step:
            steps = (value - self.low) / self.step
            if abs(steps - round(steps)) > 1e-9:
                return False
        return self.low <= value <= self.high


def default_search_space() -> dict[str, ParamSpec]:
    """The four hyperparameters of the original plan."""
    return {
        "epochs": ParamSpec("int", low=1, high=5),
        "batch_size": ParamSpec("categorical", choices=(2, 4, 8)),
        "learning_rate": ParamSpec("float", low=1e-5, high=1e-3, log=True),
        "lora_rank": ParamSpec("categorical", choices=(4, 8, 16)),
    }


SEED_TRIALS: tuple[dict[str, Any], ...] = (
    {"epochs": 5, "batch_size": 2, "learning_rate": 5e-4, "lora_rank": 8},
    {"epochs": 5, "batch_size": 2, "learning_rate": 2e-4, "lora_rank": 8},
    {"epochs": 5, "batch_size": 2, "learning_rate": 2e-4, "lora_rank": 16},
)
"""The three hand-picked configs of the original plan, enqueued first."""


def check_dimension(name: str, spec: ParamSpec, train: TrainConfig) -> None:
    """A dimension must tune a tunable field, with values that field accepts.

    Raises:
        ConfigError: Naming ``search_space.<name>`` and the bound the field refuses.
    """
    where = f"search_space.{toml_key(name)}"
    if name not in TUNABLE:
        raise ConfigError(f"{where}: not tunable; choose from {', '.join(TUNABLE)}")
    hint = field_hints(TrainConfig)[name]
    if spec.type == "float" and not converts(1.5, hint):
        raise ConfigError(f"{where}.type='float': train.{name} is an integer; use type = \"int\"")
    for label, value in spec.bounds():
        convert(value, hint, f"{where}.{label}")
        try:
            dataclasses.replace(train, **{name: value})
        except ValueError as exc:
            raise ConfigError(f"{where}.{label}={short(value)}: {exc}") from exc


def converts(value: Any, hint: Any) -> bool:
    """Whether ``value`` passes :func:`~hpo.study.config_check.convert` for annotation ``hint``."""
    try:
        convert(value, hint, "")
    except ConfigError:
        return False
    return True


def merge_search_space(raw: Any, where: str) -> dict[str, Any]:
    """The default search space with a config's ``[search_space]`` table applied.

    Raises:
        ConfigError: If ``exclude`` names no default dimension, or one that is also given.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}={short(raw)}: expected a table")
    raw = dict(raw)
    defaults: dict[str, Any] = default_search_space()
    exclude = convert(raw.pop(EXCLUDE_KEY, ()), tuple[str, ...], child(where, EXCLUDE_KEY))
    for i, name in enumerate(exclude):
        if name not in defaults:
            raise ConfigError(
                f"{child(where, EXCLUDE_KEY)}[{i}]={name!r}: not a default dimension; "
                f"expected one of {', '.join(defaults)}"
            )
        if name in raw:
            raise ConfigError(
                f"{child(where, name)}: both excluded and given; remove one of the two"
            )
    merged = {name: spec for name, spec in defaults.items() if name not in exclude}
    merged.update(raw)
    return merged


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Ask the trial for a value of every dimension of the space."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.type == "categorical":
            params[name] = trial.suggest_categorical(name, list(spec.choices or ()))
        elif spec.type == "int":
            assert spec.low is not None and spec.high is not None
            params[name] = trial.suggest_int(
                name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
            )
        else:
            assert spec.low is not None and spec.high is not None
            params[name] = trial.suggest_float(
                name, spec.low, spec.high, log=spec.log, step=spec.step
            )
    return params
