"""The study: its TOML config and search space, the sampler and pruner registries, the
race-safe creation of the Optuna study, and the read-only queries of its trials.

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from hpo.study.config import (
        StudyConfig,
        load_config,
        packaged_config,
        study_eval_config,
        train_config_for,
    )
    from hpo.study.config_check import ConfigError
    from hpo.study.creation import StudyConfigMismatch, create_study, load_study
    from hpo.study.queries import all_trials, best_trials, list_studies, study_status, trials_page
    from hpo.study.space import ParamSpec, suggest
    from hpo.study.strategies import PrunerConfig, SamplerConfig, make_pruner, make_sampler

_MODULES: dict[str, tuple[str, ...]] = {
    "hpo.study.config": (
        "StudyConfig",
        "load_config",
        "packaged_config",
        "study_eval_config",
        "train_config_for",
    ),
    "hpo.study.config_check": ("ConfigError",),
    "hpo.study.creation": ("StudyConfigMismatch", "create_study", "load_study"),
    "hpo.study.queries": (
        "all_trials",
        "best_trials",
        "list_studies",
        "study_status",
        "trials_page",
    ),
    "hpo.study.space": ("ParamSpec", "suggest"),
    "hpo.study.strategies": ("PrunerConfig", "SamplerConfig", "make_pruner", "make_sampler"),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "ConfigError",
    "ParamSpec",
    "PrunerConfig",
    "SamplerConfig",
    "StudyConfig",
    "StudyConfigMismatch",
    "all_trials",
    "best_trials",
    "create_study",
    "list_studies",
    "load_config",
    "load_study",
    "make_pruner",
    "make_sampler",
    "packaged_config",
    "study_eval_config",
    "study_status",
    "suggest",
    "train_config_for",
    "trials_page",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
