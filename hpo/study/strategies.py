"""Sampler and pruner choice by name: Optuna's own strategies behind a small registry.

Each choice is a small config dataclass here (:class:`SamplerConfig`, :class:`PrunerConfig`, the
``[sampler]`` and ``[pruner]`` tables of a study config). The registries are the one list of
valid names: the dataclasses check their ``name`` against them when a config is read, so that
a wrong name stops ``hpo study create`` instead of every worker. A new strategy is one function
here and one registry entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from hpo.study.config_check import check_fields, require

SAMPLER_SEED_MAX = 2**31 - 1
"""Largest sampler seed: each worker adds its index, and the sum must stay a numpy seed."""


@dataclass(frozen=True)
class SamplerConfig:
    """Optuna sampler choice (``hpo.study.strategies.SAMPLERS``)."""

    name: str = "tpe"
    """``tpe`` or ``random``."""
    seed: int | None = 0
    """Base seed; each worker adds its index, so workers do not propose the same points."""
    n_startup_trials: int = 4
    """TPE: random trials before the model takes over."""

    def __post_init__(self) -> None:
        check_fields(self)
        require(self.name in SAMPLERS, "name", self.name, f"one of {', '.join(SAMPLERS)}")
        require(
            self.seed is None or 0 <= self.seed <= SAMPLER_SEED_MAX,
            "seed",
            self.seed,
            f"0..{SAMPLER_SEED_MAX}",
        )
        require(self.n_startup_trials >= 0, "n_startup_trials", self.n_startup_trials, ">= 0")


@dataclass(frozen=True)
class PrunerConfig:
    """Optuna pruner choice (``hpo.study.strategies.PRUNERS``), applied to intermediate eval_loss.

    A trial reports one eval_loss per evaluation (``train.evals_per_epoch`` per epoch), so
    every step below counts evaluations. The default, the median pruner with one startup
    trial, is the one ``benchmarks/bench_compute_to_best.py`` measured to pay (BENCHMARKS.md).
    """

    name: str = "median"
    """``median``, ``percentile``, ``successive_halving``, ``hyperband`` or ``none``."""
    n_startup_trials: int = 1
    """Median and percentile: trials that finish before any is pruned (1: the first seed
    config sets the bar, and the other seeds can be stopped)."""
    n_warmup_steps: int = 1
    """Median and percentile: evaluations of a trial before it may be pruned."""
    percentile: float = 50.0
    """Percentile pruner: the percentile to keep (0..100)."""
    min_resource: int = 1
    """Successive halving and Hyperband: the evaluation of a trial's first comparison."""
    reduction_factor: int = 3
    """Successive halving and Hyperband: one trial in this many goes on at each comparison,
    made at evaluations ``min_resource * reduction_factor**i`` (>= 2)."""
    max_resource: int | None = None
    """Hyperband: the evaluations of a full trial; None: those of the first finished trial."""
    patience: int | None = None
    """Any pruner: prune only a trial whose eval_loss has not improved for this many
    evaluations (Optuna's PatientPruner around it); None: off."""
    max_eval_loss: float | None = None
    """Any pruner: also prune a trial whose eval_loss rises above this (Optuna's
    ThresholdPruner beside it), e.g. a diverging learning rate; None: off."""

    def __post_init__(self) -> None:
        check_fields(self)
        require(self.name in PRUNERS, "name", self.name, f"one of {', '.join(PRUNERS)}")
        require(self.n_startup_trials >= 0, "n_startup_trials", self.n_startup_trials, ">= 0")
        require(self.n_warmup_steps >= 0, "n_warmup_steps", self.n_warmup_steps, ">= 0")
        require(0 <= self.percentile <= 100, "percentile", self.percentile, "a number in 0..100")
        require(self.min_resource >= 1, "min_resource", self.min_resource, ">= 1")
        require(self.reduction_factor >= 2, "reduction_factor", self.reduction_factor, ">= 2")
        require(
            self.max_resource is None or self.max_resource >= self.min_resource,
            "max_resource",
            self.max_resource,
            f"none or an integer >= min_resource ({self.min_resource})",
        )
        require(
            self.patience is None or self.patience >= 0, "patience", self.patience, "none or >= 0"
        )


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
