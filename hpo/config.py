"""Study configuration: a TOML file that lists only what differs from the defaults.

Sections, all optional (each field is documented on its dataclass below): ``[study]``,
``[sampler]``, ``[pruner]``, ``[search_space]``, ``[[seed_trials]]``, ``[train]``,
``[train.data]`` and ``[model]``. An empty file is refused: it would create the default
study without a word; name at least the study and its dataset.

**Search space.** A config starts from :func:`default_search_space` (``epochs``,
``batch_size``, ``learning_rate``, ``lora_rank``). A ``[search_space.X]`` table replaces the
default dimension ``X`` or adds one (``X`` must be a tunable TrainConfig field, see
``TUNABLE``); the other default dimensions stay. ``exclude`` drops default dimensions, whose
values then come from ``[train]``::

    [search_space]
    exclude = ["lora_rank"]          # every trial trains with train.lora_rank

    [search_space.learning_rate]     # replaces the default range
    type = "float"
    low = 1e-5
    high = 1e-3
    log = true

    [search_space.lora_dropout]      # added
    type = "float"
    low = 0.0
    high = 0.2

The default seed trials set the four default dimensions to the original plan's values. A
config that drops one of them, or narrows it so that a seed value falls outside, lists its own
``[[seed_trials]]`` (or ``seed_trials = []`` above the first table).

**Checks.** Every value is checked against its field's type annotation before anything is
written (``true`` is not an integer, an integer is a fine number, a list becomes a tuple), then
against the field's range, including the training config each search-space bound would give.
An error is one line that names the file and the field, e.g.
``study.toml: study.n_trials=3.7: expected an integer``.

**Storage.** The whole config is stored in the study (user attribute ``hpo_config``) in its
complete form: the search space as searched, not as written. Workers need only the storage URL
and the study name; a second ``study create`` with any different value is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from storage.artifacts import validate_name
from trainers.config import ModelConfig, TrainConfig, tunable_fields
from trainers.embedding import DEFAULT_EMBEDDING_MODEL

TUNABLE = tunable_fields()
"""TrainConfig fields a search space may tune (marked on the fields in trainers/config.py)."""

PARAM_TYPES = ("float", "int", "categorical")
N_TRIALS_MAX = 1_000_000
"""Most trials a study may run; more is a typo, not a plan."""
K_MAX = 10_000
"""Most persona clusters a study may name."""
SEED_MAX = 2**32 - 1
"""Largest seed numpy (KMeans, Optuna's samplers) accepts."""
SAMPLER_SEED_MAX = 2**31 - 1
"""Largest sampler seed: each worker adds its index, and the sum must stay a numpy seed."""
EXCLUDE_KEY = "exclude"
"""``[search_space]`` key listing the default dimensions to drop."""

T = TypeVar("T")
_NONE_TYPE = type(None)
_SECTIONS = "study, sampler, pruner, search_space, seed_trials, train, model"


class ConfigError(ValueError):
    """A study config is invalid; the message names the file and the field."""


# --- checking values against their annotations ---------------------------------------------


def _short(value: Any) -> str:
    """``repr`` cut to a length that keeps an error on one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
_PLURALS = {bool: "booleans", int: "integers", float: "finite numbers", str: "strings"}


def _describe(hint: Any, plural: bool = False) -> str:
    """What a value of this type looks like in TOML, for an error message."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        text = " or ".join(_describe(a, plural) for a in args if a is not _NONE_TYPE)
        return f"{text} or none" if _NONE_TYPE in args else text
    if hint is Any:
        return "values" if plural else "any value"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "tables" if plural else "a table"
    if origin is tuple:
        return "lists" if plural else f"a list of {_describe(get_args(hint)[0], plural=True)}"
    if origin is Literal:
        return " or ".join(map(repr, get_args(hint)))
    return (_PLURALS if plural else _NAMES).get(hint, str(hint))


def _mismatch(value: Any, hint: Any, where: str) -> ConfigError:
    return ConfigError(f"{where}={_short(value)}: expected {_describe(hint)}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field annotations of a dataclass (computed once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: Any) -> str:
    """A key as TOML writes it: bare, or quoted when it holds other characters (a newline)."""
    text = str(name)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)


def _child(where: str, name: Any) -> str:
    """The dotted name of a key below ``where`` (``FILE: `` starts a file's top level)."""
    name = _key(name)
    return f"{where}{name}" if not where or where.endswith(": ") else f"{where}.{name}"


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``hint``, and return it in that type.

    ``bool`` is not an ``int``; an ``int`` is a fine ``float`` (kept as given); lists become
    tuples; tables become dataclasses (an instance is checked field by field).

    Raises:
        ConfigError: Naming ``where``, the value and the expected type.
    """
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and _NONE_TYPE in args:
            return None
        options = [arg for arg in args if arg is not _NONE_TYPE]
        if len(options) == 1 and value is not None:
            return _convert(value, options[0], where)  # its own, more precise error
        for arg in options:
            try:
                return _convert(value, arg, where)
            except ConfigError:
                continue
        raise _mismatch(value, hint, where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            _check_fields(value, where)
            return value
        return _build(hint, value, where)
    if origin is tuple:
        item_hint = get_args(hint)[0]
        if not isinstance(value, list | tuple):
            raise _mismatch(value, hint, where)
        return tuple(_convert(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        value_hint = get_args(hint)[1]
        if not isinstance(value, dict):
            raise _mismatch(value, hint, where)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: key {_short(key)}: expected a string")
            out[key] = _convert(item, value_hint, _child(where, key))
        return out
    if origin is Literal:
        if not any(_same_choice(value, choice) for choice in get_args(hint)):
            raise ConfigError(
                f"{where}={_short(value)}: expected one of {', '.join(map(repr, get_args(hint)))}"
            )
        return value
    if hint is float:
        # inf and nan are valid TOML, but no field means them, and nan != nan in comparisons
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint in (bool, str):
        ok = isinstance(value, hint)
    else:
        raise TypeError(f"{where}: the config checker does not know the type {hint!r}")
    if not ok:
        raise _mismatch(value, hint, where)
    return value


def _check_fields(obj: Any, where: str = "") -> None:
    """Check every field of a dataclass instance against its annotation."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        _convert(getattr(obj, f.name), hints[f.name], _child(where, f.name))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _field_message(cls: type, where: str, exc: ValueError) -> str:
    """A check's message below ``where``: ``where.field=...`` when it starts with a field."""
    message = _first_line(exc)
    if not where:
        return message
    first = re.split(r"[=:.\[ ]", message, maxsplit=1)[0]
    if first in {f.name for f in dataclasses.fields(cls)}:
        return f"{where}{message}" if where.endswith(": ") else f"{where}.{message}"
    return f"{where.rstrip(': ')}: {message}"


def _build(cls: type[T], data: Any, where: str) -> T:
    """Build a dataclass from a table: unknown keys, types and ranges checked, each named.

    Raises:
        ConfigError: Naming ``where`` and the field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip(': ')}={_short(data)}: expected a table")
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    names = sorted(f.name for f in fields)
    unknown = sorted(str(key) for key in data if key not in names)
    if unknown:
        raise ConfigError(
            f"{_child(where, unknown[0])}: unknown key; expected one of {', '.join(names)}"
        )
    for f in fields:
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in data:
            raise ConfigError(
                f"{_child(where, f.name)}: missing; expected {_describe(hints[f.name])}"
            )
    kwargs = {
        name: _convert(value, hints[name], _child(where, name)) for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(_field_message(cls, where, exc)) from exc


def _require(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"{name}={_short(value)}: expected {expected}")


def _in_range(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# --- the config dataclasses -------------------------------------------------------------------


@dataclass(frozen=True)
class StudySection:
    """What the study optimizes, and on which data."""

    name: str = "cluster4"
    """Study name (letters, digits, '.', '_', '-'); also names the output folders."""
    dataset: str = "demo"
    """Name of an imported dataset (``hpo data import``)."""
    k: int = 5
    """Number of persona clusters of the clustering to use."""
    cluster_id: int = 4
    """The cluster whose adapter is tuned (clusters are numbered by size, smallest first)."""
    n_trials: int = 12
    """Trials the study runs in total (complete + pruned), over all workers (1..1,000,000)."""
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    """Sentence-transformers model (name or path) for clustering and similarity."""
    clustering_seed: int = 0
    """KMeans seed of the clustering to use."""

    def __post_init__(self) -> None:
        _check_fields(self)
        validate_name(self.name, what="study name")
        validate_name(self.dataset, what="dataset name")
        _require(
            _in_range(self.n_trials, 1, N_TRIALS_MAX),
            "n_trials",
            self.n_trials,
            f"an integer in 1..{N_TRIALS_MAX:,}",
        )
        _require(_in_range(self.k, 1, K_MAX), "k", self.k, f"an integer in 1..{K_MAX:,}")
        _require(0 <= self.cluster_id < self.k, "cluster_id", self.cluster_id, f"0..{self.k - 1}")
        _require(bool(self.embedding_model), "embedding_model", self.embedding_model, "a name")
        _require(
            0 <= self.clustering_seed <= SEED_MAX,
            "clustering_seed",
            self.clustering_seed,
            f"0..{SEED_MAX}",
        )


@dataclass(frozen=True)
class SamplerConfig:
    """Optuna sampler choice (``hpo.strategies.SAMPLERS``)."""

    name: str = "tpe"
    """``tpe`` or ``random``."""
    seed: int | None = 0
    """Base seed; each worker adds its index, so workers do not propose the same points."""
    n_startup_trials: int = 4
    """TPE: random trials before the model takes over."""

    def __post_init__(self) -> None:
        from hpo.strategies import SAMPLERS

        _check_fields(self)
        _require(self.name in SAMPLERS, "name", self.name, f"one of {', '.join(SAMPLERS)}")
        _require(
            self.seed is None or 0 <= self.seed <= SAMPLER_SEED_MAX,
            "seed",
            self.seed,
            f"0..{SAMPLER_SEED_MAX}",
        )
        _require(self.n_startup_trials >= 0, "n_startup_trials", self.n_startup_trials, ">= 0")


@dataclass(frozen=True)
class PrunerConfig:
    """Optuna pruner choice (``hpo.strategies.PRUNERS``), applied to intermediate eval_loss."""

    name: str = "median"
    """``median``, ``percentile``, ``hyperband`` or ``none``."""
    n_startup_trials: int = 3
    """Trials that finish before any is pruned."""
    n_warmup_steps: int = 1
    """Evaluations of a trial before it may be pruned."""
    percentile: float = 50.0
    """Percentile pruner: the percentile to keep (0..100)."""

    def __post_init__(self) -> None:
        from hpo.strategies import PRUNERS

        _check_fields(self)
        _require(self.name in PRUNERS, "name", self.name, f"one of {', '.join(PRUNERS)}")
        _require(self.n_startup_trials >= 0, "n_startup_trials", self.n_startup_trials, ">= 0")
        _require(self.n_warmup_steps >= 0, "n_warmup_steps", self.n_warmup_steps, ">= 0")
        _require(0 <= self.percentile <= 100, "percentile", self.percentile, "a number in 0..100")


def _same_choice(value: Any, choice: Any) -> bool:
    """Equal and of the same kind: ``True`` is not ``1``, ``2`` is ``2.0``."""
    if isinstance(value, bool) or isinstance(choice, bool):
        return type(value) is type(choice) and value == choice
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(choice, numbers):
        return value == choice
    return type(value) is type(choice) and value == choice


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
        _check_fields(self)
        _require(self.type in PARAM_TYPES, "type", self.type, f"one of {', '.join(PARAM_TYPES)}")
        if self.type == "categorical":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                _require(value is None, name, value, "none for categorical (it takes choices)")
            _require(bool(self.choices), "choices", self.choices, "a non-empty list")
            for i, choice in enumerate(self.choices or ()):
                _require(
                    isinstance(choice, str | int | float)
                    and not (isinstance(choice, float) and not math.isfinite(choice)),
                    f"choices[{i}]",
                    choice,
                    "a string, a finite number or true/false",
                )
            return
        _require(self.choices is None, "choices", self.choices, f"none for type {self.type!r}")
        number = "an integer" if self.type == "int" else "a finite number"
        for name in ("low", "high"):
            value = getattr(self, name)
            _require(value is not None, name, value, f"{number} (required for {self.type!r})")
            _require(self._is_number(value), name, value, number)
        assert self.low is not None and self.high is not None
        if not self.low < self.high:
            raise ConfigError(f"low={self.low}, high={self.high}: expected low < high")
        if self.step is not None:
            _require(self._is_number(self.step) and self.step > 0, "step", self.step, "> 0")
            _require(not self.log, "log", self.log, "false with a step (Optuna has no log grid)")
        if self.log:
            if self.type == "int":
                _require(self.low >= 1, "low", self.low, ">= 1 on a log scale")
            else:
                _require(self.low > 0, "low", self.low, "> 0 on a log scale")

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
            return any(_same_choice(value, c) for c in self.choices or ())
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


def _check_dimension(name: str, spec: ParamSpec, train: TrainConfig) -> None:
    """A dimension must tune a tunable field, with values that field accepts."""
    where = f"search_space.{_key(name)}"
    if name not in TUNABLE:
        raise ConfigError(f"{where}: not tunable; choose from {', '.join(TUNABLE)}")
    hint = _hints(TrainConfig)[name]
    if spec.type == "float" and not _convert_ok(1.5, hint):
        raise ConfigError(f"{where}.type='float': train.{name} is an integer; use type = \"int\"")
    for label, value in spec.bounds():
        _convert(value, hint, f"{where}.{label}")
        try:
            dataclasses.replace(train, **{name: value})
        except ValueError as exc:
            raise ConfigError(f"{where}.{label}={_short(value)}: {exc}") from exc


def _convert_ok(value: Any, hint: Any) -> bool:
    try:
        _convert(value, hint, "")
    except ConfigError:
        return False
    return True


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study needs; stored in the study so that every worker uses the same."""

    study: StudySection = field(default_factory=StudySection)
    """What the study optimizes, and on which data."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Optuna sampler."""
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    """Optuna pruner."""
    search_space: dict[str, ParamSpec] = field(default_factory=default_search_space)
    """The complete search space, by TrainConfig field."""
    seed_trials: tuple[dict[str, Any], ...] = SEED_TRIALS
    """Parameter sets enqueued before the sampler proposes any."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training config of every trial, before the trial's parameters replace fields."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model."""

    def __post_init__(self) -> None:
        _check_fields(self)
        for name, spec in self.search_space.items():
            _check_dimension(name, spec, self.train)
        for i, seed in enumerate(self.seed_trials):
            for name, value in seed.items():
                dimension = self.search_space.get(name)
                if dimension is None:
                    raise ConfigError(f"seed_trials[{i}].{_key(name)}: not in the search space")
                if not dimension.contains(value):
                    raise ConfigError(
                        f"seed_trials[{i}].{_key(name)}={_short(value)}: outside the search space"
                    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the study)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --- reading ---------------------------------------------------------------------------------


def _merge_search_space(raw: Any, where: str) -> dict[str, Any]:
    """The default search space with a config's ``[search_space]`` table applied."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}={_short(raw)}: expected a table")
    raw = dict(raw)
    defaults: dict[str, Any] = default_search_space()
    exclude = _convert(raw.pop(EXCLUDE_KEY, ()), tuple[str, ...], _child(where, EXCLUDE_KEY))
    for i, name in enumerate(exclude):
        if name not in defaults:
            raise ConfigError(
                f"{_child(where, EXCLUDE_KEY)}[{i}]={name!r}: not a default dimension; "
                f"expected one of {', '.join(defaults)}"
            )
        if name in raw:
            raise ConfigError(
                f"{_child(where, name)}: both excluded and given; remove one of the two"
            )
    merged = {name: spec for name, spec in defaults.items() if name not in exclude}
    merged.update(raw)
    return merged


def config_from_dict(
    data: dict[str, Any], where: str = "config", *, merge_defaults: bool = False
) -> StudyConfig:
    """Build a StudyConfig from plain data (a parsed TOML file or the stored study attribute).

    Args:
        data: The sections, as TOML or JSON gives them.
        where: What the data came from (a file name), the first word of every error.
        merge_defaults: Apply ``[search_space]`` to the default space (a config file, see the
            module docstring); ``False`` takes it as the complete space (the stored form).

    Raises:
        ConfigError: One line naming ``where`` and the field.
    """
    top = f"{where}: "
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table of sections, got {_short(data)}")
    data = dict(data)
    unknown = sorted(
        str(key) for key in data if key not in {f.name for f in dataclasses.fields(StudyConfig)}
    )
    if unknown:
        raise ConfigError(f"{top}unknown section [{_key(unknown[0])}]; expected {_SECTIONS}")
    given_seeds = "seed_trials" in data
    if merge_defaults and "search_space" in data:
        data["search_space"] = _merge_search_space(data["search_space"], f"{top}search_space")
    try:
        return _build(StudyConfig, data, top)
    except ConfigError as exc:
        message = str(exc)
        if merge_defaults and not given_seeds and ": seed_trials[" in message:
            message += (
                "; the default seed trials set epochs, batch_size, learning_rate and "
                "lora_rank: list your own [[seed_trials]] (or seed_trials = [])"
            )
            raise ConfigError(message) from exc
        raise


def load_config(path: str | Path) -> StudyConfig:
    """Read a study config TOML file (only what differs from the defaults).

    Raises:
        ConfigError: If the file is missing, a folder, not TOML, empty, or a field is invalid
            (named, with the file).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: a folder, not a config file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {_first_line(exc)}") from exc
    if not data:
        raise ConfigError(
            f"{path}: empty config; name at least the study and its dataset "
            '([study] name = "..." and dataset = "..."); every other value has a default'
        )
    return config_from_dict(data, str(path), merge_defaults=True)


def packaged_config(name: str) -> Path:
    """Path of a config shipped with the package (``demo``, ``cluster4``)."""
    path = Path(__file__).parent / "configs" / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"no packaged config named {name!r}")
    return path
