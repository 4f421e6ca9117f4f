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

The value checks live in :mod:`hpo.study.config_check`, the search space (:class:`ParamSpec`, the
defaults and seed trials) in :mod:`hpo.study.space`; their public names are re-exported here.

**Storage.** The whole config is stored with the study in its complete form (the search space
as searched, not as written): a ``study_records`` row, pointed at by the study user attribute
``hpo_config_sha256`` (:mod:`hpo.study.records`; older studies hold it whole in
``hpo_config``). Workers need only the storage URL and the study name; a second ``study create``
with any different value is refused.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo.study.config_check import (
    ConfigError,
    build,
    check_fields,
    in_range,
    require,
    short,
    toml_key,
)
from hpo.study.space import (
    EXCLUDE_KEY,
    PARAM_TYPES,
    SEED_TRIALS,
    TUNABLE,
    ParamSpec,
    check_dimension,
    default_search_space,
    merge_search_space,
)
from hpo.study.strategies import PrunerConfig, SamplerConfig
from storage.artifacts import validate_name
from trainers.config import ModelConfig, TrainConfig
from trainers.embedding import DEFAULT_EMBEDDING_MODEL
from trainers.input_file import CONFIG_MAX_BYTES, InputFileError, read_toml

N_TRIALS_MAX = 1_000_000
"""Most trials a study may run; more is a typo, not a plan."""
MAX_STEPS_MAX = 10**12
"""Most optimizer steps a study may budget; more is a typo, not a plan."""
K_MAX = 10_000
"""Most persona clusters a study may name."""
SEED_MAX = 2**32 - 1
"""Largest seed numpy (KMeans, Optuna's samplers) accepts."""
_SECTIONS = "study, sampler, pruner, search_space, seed_trials, train, model"

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
    max_steps: int | None = None
    """Optimizer steps all its trials may train together; the study ends at ``n_trials`` or
    here, whichever comes first (None: no step limit)."""
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    """Sentence-transformers model (name or path) for clustering and similarity."""
    clustering_seed: int = 0
    """KMeans seed of the clustering to use."""

    def __post_init__(self) -> None:
        check_fields(self)
        validate_name(self.name, what="study name")
        validate_name(self.dataset, what="dataset name")
        require(
            in_range(self.n_trials, 1, N_TRIALS_MAX),
            "n_trials",
            self.n_trials,
            f"an integer in 1..{N_TRIALS_MAX:,}",
        )
        require(
            self.max_steps is None or in_range(self.max_steps, 1, MAX_STEPS_MAX),
            "max_steps",
            self.max_steps,
            f"none or an integer in 1..{MAX_STEPS_MAX:,}",
        )
        require(in_range(self.k, 1, K_MAX), "k", self.k, f"an integer in 1..{K_MAX:,}")
        require(0 <= self.cluster_id < self.k, "cluster_id", self.cluster_id, f"0..{self.k - 1}")
        require(bool(self.embedding_model), "embedding_model", self.embedding_model, "a name")
        require(
            0 <= self.clustering_seed <= SEED_MAX,
            "clustering_seed",
            self.clustering_seed,
            f"0..{SEED_MAX}",
        )


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
        check_fields(self)
        for name, spec in self.search_space.items():
            check_dimension(name, spec, self.train)
        for i, seed in enumerate(self.seed_trials):
            for name, value in seed.items():
                dimension = self.search_space.get(name)
                if dimension is None:
                    raise ConfigError(f"seed_trials[{i}].{toml_key(name)}: not in the search space")
                if not dimension.contains(value):
                    where = f"seed_trials[{i}].{toml_key(name)}"
                    raise ConfigError(f"{where}={short(value)}: outside the search space")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in the study)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --- reading ---------------------------------------------------------------------------------


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
        raise ConfigError(f"{where}: expected a table of sections, got {short(data)}")
    data = dict(data)
    unknown = sorted(
        str(key) for key in data if key not in {f.name for f in dataclasses.fields(StudyConfig)}
    )
    if unknown:
        raise ConfigError(f"{top}unknown section [{toml_key(unknown[0])}]; expected {_SECTIONS}")
    given_seeds = "seed_trials" in data
    if merge_defaults and "search_space" in data:
        data["search_space"] = merge_search_space(data["search_space"], f"{top}search_space")
    try:
        return build(StudyConfig, data, top)
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
        ConfigError: If the file is missing, not a regular file (a folder, a FIFO, a device)
            or over 1 MiB (``trainers.input_file.CONFIG_MAX_BYTES``), not TOML (named with
            its line), nested deeper than 64 levels, empty, or a field is invalid (named,
            with the file).
    """
    path = Path(path)
    try:
        data = read_toml(path, limit=CONFIG_MAX_BYTES, what="a config file")
    except InputFileError as exc:  # the file's kind, size, or a parse error with its line
        raise ConfigError(f"{path}: no such config file" if exc.missing else str(exc)) from exc
    if not data:
        raise ConfigError(
            f"{path}: empty config; name at least the study and its dataset "
            '([study] name = "..." and dataset = "..."); every other value has a default'
        )
    return config_from_dict(data, str(path), merge_defaults=True)


def train_config_for(config: StudyConfig, params: dict[str, Any]) -> TrainConfig:
    """The study's base TrainConfig with the trial's parameters replaced."""
    return dataclasses.replace(config.train, **params)


def packaged_config(name: str) -> Path:
    """Path of a config shipped with the package (``demo``, ``cluster4``)."""
    path = Path(__file__).parents[1] / "configs" / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"no packaged config named {name!r}")
    return path


__all__ = [
    "EXCLUDE_KEY",
    "K_MAX",
    "MAX_STEPS_MAX",
    "N_TRIALS_MAX",
    "PARAM_TYPES",
    "SEED_MAX",
    "SEED_TRIALS",
    "TUNABLE",
    "ConfigError",
    "ParamSpec",
    "StudyConfig",
    "StudySection",
    "config_from_dict",
    "default_search_space",
    "load_config",
    "packaged_config",
    "train_config_for",
]
