"""The search space: turn a trial's suggestions into a TrainConfig."""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from hpo.config import ParamSpec, StudyConfig
from trainers.config import TrainConfig


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Ask the trial for a value of every dimension of the space."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.type == "categorical":
            params[name] = trial.suggest_categorical(name, list(spec.choices or ()))
        elif spec.type == "int":
            assert spec.low is not None and spec.high is not None
            params[name] = trial.suggest_int(
                name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
            )
        else:
            assert spec.low is not None and spec.high is not None
            params[name] = trial.suggest_float(
                name, spec.low, spec.high, log=spec.log, step=spec.step
            )
    return params


def train_config_for(config: StudyConfig, params: dict[str, Any]) -> TrainConfig:
    """The study's base TrainConfig with the trial's parameters replaced."""
    return dataclasses.replace(config.train, **params)
