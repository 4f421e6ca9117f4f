"""TrainConfig's tunable fields are marked on the fields themselves."""

from __future__ import annotations

import dataclasses

from trainers.config import TrainConfig, tunable_fields


def test_tunable_fields_are_the_marked_ones_in_field_order() -> None:
    assert tunable_fields() == (
        "epochs",
        "batch_size",
        "learning_rate",
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "lora_targets",
        "weight_decay",
    )


def test_only_hyperparameters_are_tunable() -> None:
    """Seeds, schedule and data selection stay out of a search space."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert {"seed", "data", "evals_per_epoch", "target_modules", "max_grad_norm"} <= names
    assert not {"seed", "data", "evals_per_epoch", "target_modules", "max_grad_norm"} & set(
        tunable_fields()
    )


def test_marking_keeps_the_defaults() -> None:
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.learning_rate) == (5, 2, 2e-4)
    assert (config.lora_rank, config.lora_alpha, config.alpha) == (8, None, 16)
    assert (config.lora_dropout, config.weight_decay) == (0.05, 0.0)
