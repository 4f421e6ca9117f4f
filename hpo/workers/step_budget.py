"""A trial's side of the study's step budget: charge optimizer steps before training them.

:func:`storage.charge_steps` keeps the count exact across workers; this module decides what a
trial charges and when. Before training, a trial charges the optimizer steps up to its first
evaluation; after each evaluation that does not stop it, the steps up to the next one. A
refused charge stops the trial at the evaluation it just made (pruned, "step budget spent").
Charging before training, not after, keeps the steps trained within ``max_steps`` even while
several workers train at once; charging per evaluation, not a trial's whole length at its
start, lets a budget that pruned trials leave mostly unused go to further trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import storage
from trainers.config import TrainConfig

BUDGET_SPENT = "step budget spent"
"""The reason of a trial stopped because the study's step budget refused its next steps."""


def optimizer_steps(config: TrainConfig, n_train: int) -> tuple[int, int]:
    """The steps between two evaluations and the steps of the whole run, as
    :func:`trainers.recipe.train_lora` schedules them: ``ceil(n_train / batch_size)`` steps
    per epoch, an evaluation every ``steps_per_epoch // evals_per_epoch`` steps (at least 1)
    and one at the last step.

    Args:
        config: The trial's training config.
        n_train: Training examples (one optimizer row each).

    Returns:
        ``(interval, total)``.

    Raises:
        ValueError: If ``n_train`` is below 1.
    """
    if n_train < 1:
        raise ValueError(f"invalid n_train={n_train!r}: expected an integer >= 1")
    per_epoch = math.ceil(n_train / config.batch_size)
    return max(1, per_epoch // config.evals_per_epoch), per_epoch * config.epochs


@dataclass
class StepCharger:
    """Charges one trial's steps to its study's step budget, one evaluation interval ahead."""

    engine: Any
    study_name: str
    interval: int
    """Optimizer steps between two evaluations."""
    total: int
    """Optimizer steps of the whole run."""
    charged: int = 0
    """Steps of this trial charged so far."""
    refused: bool = False
    """True once the budget refused a charge: the trial must stop."""

    @classmethod
    def for_trial(
        cls, engine: Any, study_name: str, config: TrainConfig, n_train: int
    ) -> StepCharger | None:
        """A charger for a trial of a study with a step limit; None for a study without one
        (nothing to charge, no write per evaluation)."""
        with storage.session_scope(engine) as session:
            budget = storage.step_budget(session, study_name)
        if budget is None or budget.max_steps is None:
            return None
        interval, total = optimizer_steps(config, n_train)
        return cls(engine, study_name, interval, total)

    def charge_next(self) -> bool:
        """Charge the steps up to the next evaluation (none after the last one).

        Returns:
            True to train on; False when the budget refused the steps (stop the trial).
        """
        n = min(self.interval, self.total - self.charged)
        if n <= 0 or self.refused:
            return not self.refused
        with storage.session_scope(self.engine) as session:
            if storage.charge_steps(session, self.study_name, n):
                self.charged += n
                return True
        self.refused = True
        return False
