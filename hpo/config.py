"""Study configuration: a TOML file that lists only what differs from the defaults.

The whole config is stored in the study (user attribute ``hpo_config``), so workers need
only the storage URL and the study name, and a second ``study create`` with a different
search space or objective is refused.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.artifacts import validate_name
from trainers.config import DataConfig, ModelConfig, TrainConfig
from trainers.embedding import DEFAULT_EMBEDDING_MODEL

TUNABLE = (
    "epochs",
    "batch_size",
    "learning_rate",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "weight_decay",
)
"""TrainConfig fields a search space may tune."""

PARAM_TYPES = ("float", "int", "categorical")


class ConfigError(ValueError):
    """A study config is invalid; the message names the file and the field."""


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
    """Trials the study runs in total (complete + pruned), over all workers."""
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    """Sentence-transformers model (name or path) for clustering and similarity."""
    clustering_seed: int = 0
    """KMeans seed of the clustering to use."""

    def __post_init__(self) -> None:
        validate_name(self.name, what="study name")
        if self.n_trials < 1:
            raise ValueError(f"invalid study.n_trials={self.n_trials}: expected >= 1")
        if self.cluster_id < 0 or self.cluster_id >= self.k:
            raise ValueError(
                f"invalid study.cluster_id={self.cluster_id}: expected 0..{self.k - 1}"
            )


@dataclass(frozen=True)
class SamplerConfig:
    """Optuna sampler choice."""

    name: str = "tpe"
    """``tpe`` or ``random``."""
    seed: int | None = 0
    """Base seed; each worker adds its index, so workers do not propose the same points."""
    n_startup_trials: int = 4
    """TPE: random trials before the model takes over."""


@dataclass(frozen=True)
class PrunerConfig:
    """Optuna pruner choice, applied to intermediate eval_loss values."""

    name: str = "median"
    """``median``, ``percentile``, ``hyperband`` or ``none``."""
    n_startup_trials: int = 3
    """Trials that finish before any is pruned."""
    n_warmup_steps: int = 1
    """Evaluations of a trial before it may be pruned."""
    percentile: float = 50.0
    """Percentile pruner: the percentile to keep."""


@dataclass(frozen=True)
class ParamSpec:
    """One dimension of the search space."""

    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"type={self.type!r}: expected one of {', '.join(PARAM_TYPES)}")
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"low={self.low}, high={self.high}: need low < high")
        elif self.log and self.low <= 0:
            raise ValueError(f"low={self.low}: a log scale needs low > 0")

    def contains(self, value: Any) -> bool:
        """Whether a value lies in this dimension (seed configs must)."""
        if self.type == "categorical":
            return value in (self.choices or ())
        assert self.low is not None and self.high is not None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        if self.step and (value - self.low) % self.step:
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


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study needs; stored in the study so that every worker uses the same."""

    study: StudySection = field(default_factory=StudySection)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    search_space: dict[str, ParamSpec] = field(default_factory=default_search_space)
    seed_trials: tuple[dict[str, Any], ...] = SEED_TRIALS
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        for name in self.search_space:
            if name not in TUNABLE:
                raise ValueError(
                    f"search_space.{name}: not tunable; choose from {', '.join(TUNABLE)}"
                )
        for i, seed in enumerate(self.seed_trials):
            for name, value in seed.items():
                spec = self.search_space.get(name)
                if spec is None:
                    raise ValueError(f"seed_trials[{i}].{name}: not in the search space")
                if not spec.contains(value):
                    raise ValueError(f"seed_trials[{i}].{name}={value!r}: outside the search space")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the study)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def identity(self) -> dict[str, Any]:
        """What must match between a stored study and a config that reuses its name."""
        d = self.to_dict()
        return {
            "study": {k: v for k, v in d["study"].items() if k != "n_trials"},
            "search_space": d["search_space"],
            "train": d["train"],
            "model": d["model"],
        }


def _build(cls: type, data: Any, where: str) -> Any:
    """Build a dataclass from a mapping, rejecting unknown keys with their dotted name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(names))}"
        )
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def config_from_dict(data: dict[str, Any], where: str = "config") -> StudyConfig:
    """Build a StudyConfig from plain data (a parsed TOML file or the stored study attribute)."""
    data = dict(data)
    try:
        train = dict(data.pop("train", {}))
        if "data" in train:
            train["data"] = _build(DataConfig, train["data"], f"{where}: train.data")
        if train.get("target_modules") is not None:
            train["target_modules"] = tuple(train["target_modules"])
        space_raw = data.pop("search_space", None)
        space = None
        if space_raw is not None:
            space = {}
            for name, spec in space_raw.items():
                spec = dict(spec)
                if spec.get("choices") is not None:
                    spec["choices"] = tuple(spec["choices"])
                space[name] = _build(ParamSpec, spec, f"{where}: search_space.{name}")
        parts: dict[str, Any] = {
            "study": _build(StudySection, data.pop("study", {}), f"{where}: study"),
            "sampler": _build(SamplerConfig, data.pop("sampler", {}), f"{where}: sampler"),
            "pruner": _build(PrunerConfig, data.pop("pruner", {}), f"{where}: pruner"),
            "train": _build(TrainConfig, train, f"{where}: train"),
            "model": _build(ModelConfig, data.pop("model", {}), f"{where}: model"),
        }
        if space is not None:
            parts["search_space"] = space
        if "seed_trials" in data:
            parts["seed_trials"] = tuple(dict(s) for s in data.pop("seed_trials"))
        if data:
            raise ConfigError(
                f"{where}: unknown section [{sorted(data)[0]}]; expected study, "
                "sampler, pruner, search_space, seed_trials, train, model"
            )
        return StudyConfig(**parts)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from exc


def load_config(path: str | Path) -> StudyConfig:
    """Read a study config TOML file.

    Raises:
        ConfigError: If the file is missing, not TOML, or a field is invalid (named).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return config_from_dict(data, str(path))


def packaged_config(name: str) -> Path:
    """Path of a config shipped with the package (``demo``, ``cluster4``)."""
    path = Path(__file__).parent / "configs" / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"no packaged config named {name!r}")
    return path
