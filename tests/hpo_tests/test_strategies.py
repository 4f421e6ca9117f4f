"""Pruner choice by name, its checks, and the property the default was chosen for: a seed
config clearly worse than the first at the same evaluation can be stopped."""

from __future__ import annotations

import optuna
import pytest

from hpo.study.config import ConfigError, config_from_dict
from hpo.study.strategies import (
    PRUNERS,
    AnyOfPruner,
    PrunerConfig,
    SamplerConfig,
    make_pruner,
    make_sampler,
)

GOOD = [1.0, 0.9, 0.8, 0.7, 0.65, 0.6, 0.58, 0.56, 0.55]
"""eval_loss per evaluation of the first seed config, which finishes."""
WORSE = [v + 0.3 for v in GOOD]
"""A second seed config, clearly worse at every evaluation."""


def run_seeds(pruner: optuna.pruners.BasePruner) -> list[optuna.trial.FrozenTrial]:
    """The first seed finishes; the second reports WORSE until the pruner stops it."""
    study = optuna.create_study(direction="minimize", pruner=pruner)
    for losses in (GOOD, WORSE):
        trial = study.ask()
        for step, loss in enumerate(losses, start=1):
            trial.report(loss, step)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, losses[-1])
    return study.get_trials()


@pytest.mark.parametrize(
    ("config", "pruned_at"),
    [
        (PrunerConfig(), 1),  # the default: median, 1 startup trial, from evaluation 1
        (PrunerConfig(name="successive_halving"), 1),  # first comparison at min_resource=1
        (PrunerConfig(name="successive_halving", min_resource=2), 2),
        (PrunerConfig(name="hyperband", max_resource=len(GOOD)), None),
    ],
)
def test_a_clearly_worse_seed_config_can_be_stopped(
    config: PrunerConfig, pruned_at: int | None
) -> None:
    first, second = run_seeds(make_pruner(config))
    assert first.state == optuna.trial.TrialState.COMPLETE
    if config.name == "hyperband":
        # Hyperband puts each trial in one bracket (a hash of its number); in some brackets a
        # trial runs to max_resource, so only "pruned, or ran to the end" holds for any trial.
        assert second.state in (optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE)
        return
    assert second.state == optuna.trial.TrialState.PRUNED
    assert second.last_step == pruned_at


def test_median_with_three_startup_trials_cannot_stop_the_seeds() -> None:
    """The old demo setting: the three seeds are the startup trials, so none is stopped."""
    _, second = run_seeds(make_pruner(PrunerConfig(name="median", n_startup_trials=3)))
    assert second.state == optuna.trial.TrialState.COMPLETE


def test_none_never_prunes() -> None:
    _, second = run_seeds(make_pruner(PrunerConfig(name="none")))
    assert second.state == optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (PrunerConfig(name="successive_halving"), optuna.pruners.SuccessiveHalvingPruner),
        (PrunerConfig(name="hyperband"), optuna.pruners.HyperbandPruner),
        (PrunerConfig(name="median"), optuna.pruners.MedianPruner),
        (PrunerConfig(name="percentile"), optuna.pruners.PercentilePruner),
        (PrunerConfig(name="none"), optuna.pruners.NopPruner),
        (PrunerConfig(name="median", patience=2), optuna.pruners.PatientPruner),
        (PrunerConfig(name="none", patience=2), optuna.pruners.PatientPruner),
        (PrunerConfig(name="none", max_eval_loss=5.0), optuna.pruners.ThresholdPruner),
        (PrunerConfig(name="median", max_eval_loss=5.0), AnyOfPruner),
    ],
)
def test_make_pruner_builds_the_named_pruner(
    config: PrunerConfig, expected: type[optuna.pruners.BasePruner]
) -> None:
    assert type(make_pruner(config)) is expected


def test_every_registered_pruner_builds() -> None:
    for name in PRUNERS:
        assert isinstance(make_pruner(PrunerConfig(name=name)), optuna.pruners.BasePruner)


def test_threshold_beside_a_pruner_stops_a_diverging_first_trial() -> None:
    """No ranking pruner can stop the first trial (nothing to compare with); the threshold
    can, and the ranking pruner still works for the trials after it."""
    pruner = make_pruner(PrunerConfig(max_eval_loss=2.0))
    study = optuna.create_study(direction="minimize", pruner=pruner)
    trial = study.ask()
    trial.report(1.5, 1)
    assert not trial.should_prune()
    trial.report(2.5, 2)
    assert trial.should_prune()


def test_patience_keeps_a_still_improving_trial() -> None:
    """PatientPruner around the median: a worse trial that still improves goes on."""
    _, second = run_seeds(make_pruner(PrunerConfig(name="median", patience=2)))
    assert second.state == optuna.trial.TrialState.COMPLETE  # WORSE improves at every step


def test_patience_alone_stops_a_trial_that_stopped_improving() -> None:
    study = optuna.create_study(pruner=make_pruner(PrunerConfig(name="none", patience=1)))
    trial = study.ask()
    for step, loss in enumerate([1.0, 0.8, 0.9], start=1):
        trial.report(loss, step)
    assert not trial.should_prune()  # one evaluation without improvement: within patience
    trial.report(0.95, 4)
    assert trial.should_prune()


def test_any_of_pruner_needs_a_pruner() -> None:
    with pytest.raises(ValueError, match="at least one pruner"):
        AnyOfPruner()


@pytest.mark.parametrize(
    ("pruner", "message"),
    [
        ({"name": "asha"}, "pruner.name='asha': expected one of median, percentile, successive"),
        ({"reduction_factor": 1}, "pruner.reduction_factor=1: expected >= 2"),
        ({"min_resource": 0}, "pruner.min_resource=0: expected >= 1"),
        (
            {"min_resource": 4, "max_resource": 3},
            "pruner.max_resource=3: expected none or an integer >= min_resource (4)",
        ),
        ({"patience": -1}, "pruner.patience=-1: expected none or >= 0"),
        ({"max_eval_loss": "high"}, "pruner.max_eval_loss='high': expected a finite number"),
        ({"reduction_factor": 2.5}, "pruner.reduction_factor=2.5: expected an integer"),
    ],
)
def test_pruner_config_errors_name_the_file_and_field(
    pruner: dict[str, object], message: str
) -> None:
    data = {"study": {"name": "s", "dataset": "d"}, "pruner": pruner}
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, "study.toml")
    assert str(info.value).startswith(f"study.toml: {message}")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "study.max_steps=0: expected none or an integer in 1..1,000,000,000,000"),
        (True, "study.max_steps=True: expected an integer"),
        (2.5, "study.max_steps=2.5: expected an integer"),
    ],
)
def test_max_steps_is_checked(value: object, message: str) -> None:
    data = {"study": {"name": "s", "dataset": "d", "max_steps": value}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, "study.toml")
    assert str(info.value) == f"study.toml: {message}"


def test_max_steps_defaults_to_no_limit_and_round_trips() -> None:
    config = config_from_dict({"study": {"name": "s", "dataset": "d", "max_steps": 500}})
    assert config.study.max_steps == 500
    assert config_from_dict(config.to_dict()).study.max_steps == 500
    assert config_from_dict({"study": {"name": "s", "dataset": "d"}}).study.max_steps is None


def test_workers_get_different_sampler_seeds() -> None:
    def first_suggestion(worker_index: int) -> float:
        sampler = make_sampler(SamplerConfig(seed=7), worker_index)
        study = optuna.create_study(sampler=sampler)
        return study.ask().suggest_float("x", 0.0, 1.0)

    assert isinstance(make_sampler(SamplerConfig(seed=7), 0), optuna.samplers.TPESampler)
    assert first_suggestion(0) == first_suggestion(0)  # the seed decides
    assert first_suggestion(0) != first_suggestion(1)
