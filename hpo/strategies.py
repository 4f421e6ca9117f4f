"""Sampler and pruner choice by name: Optuna's own strategies behind a small registry.

The registries are the one list of valid names: :class:`hpo.config.SamplerConfig` and
:class:`hpo.config.PrunerConfig` check their ``name`` against them when a config is read, so
that a wrong name stops ``hpo study create`` instead of every worker. A new strategy is one
function here and one registry entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from hpo.config import PrunerConfig, SamplerConfig


def _tpe(cfg: SamplerConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials)


def _random(cfg: SamplerConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _median(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps
    )


def _percentile(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.PercentilePruner(
        cfg.percentile, n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps
    )


def _hyperband(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=max(1, cfg.n_warmup_steps))


def _none(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


SAMPLERS: dict[str, Callable[[SamplerConfig, int | None], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
}
"""Sampler builders by ``sampler.name``; each takes the config and the worker's seed."""

PRUNERS: dict[str, Callable[[PrunerConfig], optuna.pruners.BasePruner]] = {
    "median": _median,
    "percentile": _percentile,
    "hyperband": _hyperband,
    "none": _none,
}
"""Pruner builders by ``pruner.name``."""


def make_sampler(cfg: SamplerConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The configured sampler; the seed is offset by the worker index so workers differ.

    Raises:
        ValueError: If the name is not in :data:`SAMPLERS` (a config checks this on reading).
    """
    if cfg.name not in SAMPLERS:
        raise ValueError(f"unknown sampler {cfg.name!r}; choose from {', '.join(SAMPLERS)}")
    seed = None if cfg.seed is None else cfg.seed + worker_index
    return SAMPLERS[cfg.name](cfg, seed)


def make_pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    """The configured pruner.

    Raises:
        ValueError: If the name is not in :data:`PRUNERS` (a config checks this on reading).
    """
    if cfg.name not in PRUNERS:
        raise ValueError(f"unknown pruner {cfg.name!r}; choose from {', '.join(PRUNERS)}")
    return PRUNERS[cfg.name](cfg)
