"""Sampler and pruner choice by name: Optuna's own strategies behind a small registry.

The registries are the one list of valid names: :class:`hpo.study.config.SamplerConfig` and
:class:`hpo.study.config.PrunerConfig` check their ``name`` against them when a config is read, so
that a wrong name stops ``hpo study create`` instead of every worker. A new strategy is one
function here and one registry entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from hpo.study.config import PrunerConfig, SamplerConfig


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


def _successive_halving(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=cfg.min_resource, reduction_factor=cfg.reduction_factor
    )


def _hyperband(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(
        min_resource=cfg.min_resource,
        max_resource="auto" if cfg.max_resource is None else cfg.max_resource,
        reduction_factor=cfg.reduction_factor,
    )


def _none(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


class AnyOfPruner(optuna.pruners.BasePruner):
    """Prunes a trial as soon as one of its pruners would, asked in order.

    Optuna's ThresholdPruner judges a trial alone and has no slot for another pruner (unlike
    PatientPruner); this puts it beside the ranking pruner. Successive halving records a
    trial's rung value while it decides, so a trial the threshold stops is not ranked.
    """

    def __init__(self, *pruners: optuna.pruners.BasePruner) -> None:
        if not pruners:
            raise ValueError("AnyOfPruner needs at least one pruner, got none")
        self.pruners = pruners

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """True if any pruner prunes the trial."""
        return any(pruner.prune(study, trial) for pruner in self.pruners)


SAMPLERS: dict[str, Callable[[SamplerConfig, int | None], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
}
"""Sampler builders by ``sampler.name``; each takes the config and the worker's seed."""

PRUNERS: dict[str, Callable[[PrunerConfig], optuna.pruners.BasePruner]] = {
    "median": _median,
    "percentile": _percentile,
    "successive_halving": _successive_halving,
    "hyperband": _hyperband,
    "none": _none,
}
"""Pruner builders by ``pruner.name``; :func:`make_pruner` adds the patience and threshold
wrappers that any of them may have."""


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
    """The configured pruner: the named one, inside Optuna's PatientPruner when
    ``cfg.patience`` is set, beside a ThresholdPruner when ``cfg.max_eval_loss`` is set.

    Raises:
        ValueError: If the name is not in :data:`PRUNERS` (a config checks this on reading).
    """
    if cfg.name not in PRUNERS:
        raise ValueError(f"unknown pruner {cfg.name!r}; choose from {', '.join(PRUNERS)}")
    pruner = PRUNERS[cfg.name](cfg)
    if cfg.patience is not None:
        # "none" with a patience: stop a trial only when it stops improving.
        wrapped = None if cfg.name == "none" else pruner
        pruner = optuna.pruners.PatientPruner(wrapped, patience=cfg.patience)
    if cfg.max_eval_loss is not None:
        threshold = optuna.pruners.ThresholdPruner(upper=cfg.max_eval_loss)
        pruner = (
            threshold
            if cfg.name == "none" and cfg.patience is None
            else (AnyOfPruner(threshold, pruner))
        )
    return pruner
