"""hpo: the study service. Optuna studies over TrainConfig, workers that train trials, and the
``hpo`` command line (:mod:`hpo.cli`, a thin layer over the names below).

:mod:`hpo.study` reads a study config, creates and loads the Optuna study and queries its
trials; :mod:`hpo.workers` run trials and :mod:`hpo.workers.launch` starts them;
:mod:`hpo.datasets` imports and clusters datasets; :mod:`hpo.evaluation` is the evaluator
service; :mod:`hpo.personas` trains per-persona adapters and merges them (MoE);
:mod:`hpo.demo` runs every step once. ``hpo`` never imports transformers or peft.

The names below are loaded on first use (a module ``__getattr__``), so that ``import hpo``,
which every ``hpo.*`` import runs first, imports none of these modules: ``hpo study best``
pays for the query path only, not for the demo, the workers or the evaluators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from hpo.datasets import cluster_dataset, import_dataset, load_cluster, train_cluster_adapter
    from hpo.demo import DemoOptions, DemoResult, run_demo
    from hpo.study.config import (
        TUNABLE,
        ConfigError,
        ParamSpec,
        StudyConfig,
        StudySection,
        config_from_dict,
        default_search_space,
        load_config,
        packaged_config,
        train_config_for,
    )
    from hpo.study.creation import StudyConfigMismatch, create_study, load_study
    from hpo.study.queries import StudyStatus, TrialRow, all_trials, best_trials, study_status
    from hpo.study.space import suggest
    from hpo.study.strategies import PrunerConfig, SamplerConfig, make_pruner, make_sampler
    from hpo.workers.launch import WorkerProcess, start_workers, wait_for_workers
    from hpo.workers.objective import Objective, TrialContext
    from hpo.workers.worker import WorkerSummary, run_worker

_MODULES: dict[str, tuple[str, ...]] = {
    "hpo.datasets": ("cluster_dataset", "import_dataset", "load_cluster", "train_cluster_adapter"),
    "hpo.demo": ("DemoOptions", "DemoResult", "run_demo"),
    "hpo.study.config": (
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
    ),
    "hpo.study.creation": ("StudyConfigMismatch", "create_study", "load_study"),
    "hpo.study.queries": ("StudyStatus", "TrialRow", "all_trials", "best_trials", "study_status"),
    "hpo.study.space": ("suggest",),
    "hpo.study.strategies": ("PrunerConfig", "SamplerConfig", "make_pruner", "make_sampler"),
    "hpo.workers.launch": ("WorkerProcess", "start_workers", "wait_for_workers"),
    "hpo.workers.objective": ("Objective", "TrialContext"),
    "hpo.workers.worker": ("WorkerSummary", "run_worker"),
}
"""The module that defines each public name: the imports above, as a test checks
(``tests/hpo_tests/cli_tests/test_lazy_imports.py``)."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "TUNABLE",
    "ConfigError",
    "DemoOptions",
    "DemoResult",
    "Objective",
    "ParamSpec",
    "PrunerConfig",
    "SamplerConfig",
    "StudyConfig",
    "StudyConfigMismatch",
    "StudySection",
    "StudyStatus",
    "TrialContext",
    "TrialRow",
    "WorkerProcess",
    "WorkerSummary",
    "all_trials",
    "best_trials",
    "cluster_dataset",
    "config_from_dict",
    "create_study",
    "default_search_space",
    "import_dataset",
    "load_cluster",
    "load_config",
    "load_study",
    "make_pruner",
    "make_sampler",
    "packaged_config",
    "run_demo",
    "run_worker",
    "start_workers",
    "study_status",
    "suggest",
    "train_cluster_adapter",
    "train_config_for",
    "wait_for_workers",
]


__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
