"""Sampler and pruner choice by name: Optuna's own strategies behind a small registry."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from hpo.config import PrunerConfig, SamplerConfig


def _tpe(cfg: SamplerConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials)


def _random(cfg: SamplerConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


SAMPLERS: dict[str, Callable[[SamplerConfig, int | None], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
}

PRUNERS: dict[str, Callable[[PrunerConfig], optuna.pruners.BasePruner]] = {
    "median": lambda c: optuna.pruners.MedianPruner(
        n_startup_trials=c.n_startup_trials, n_warmup_steps=c.n_warmup_steps
    ),
    "percentile": lambda c: optuna.pruners.PercentilePruner(
        c.percentile, n_startup_trials=c.n_startup_trials, n_warmup_steps=c.n_warmup_steps
    ),
    "hyperband": lambda c: optuna.pruners.HyperbandPruner(min_resource=max(1, c.n_warmup_steps)),
    "none": lambda c: optuna.pruners.NopPruner(),
}


def make_sampler(cfg: SamplerConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The configured sampler; the seed is offset by the worker index so workers differ."""
    if cfg.name not in SAMPLERS:
        raise ValueError(f"unknown sampler {cfg.name!r}; choose from {', '.join(SAMPLERS)}")
    seed = None if cfg.seed is None else cfg.seed + worker_index
    return SAMPLERS[cfg.name](cfg, seed)


def make_pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    """The configured pruner."""
    if cfg.name not in PRUNERS:
        raise ValueError(f"unknown pruner {cfg.name!r}; choose from {', '.join(PRUNERS)}")
    return PRUNERS[cfg.name](cfg)
