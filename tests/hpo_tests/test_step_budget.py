"""A trial's step charges: against the real recipe's schedule on the tiny model, and through the
objective, which stops a trial whose next steps the study's budget refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa

import storage
from hpo.study.config import ParamSpec, StudyConfig, StudySection
from hpo.study.trial_records import records_of
from hpo.workers.objective import PRUNE_REASON_ATTR, Objective, TrialContext
from hpo.workers.step_budget import BUDGET_SPENT, StepCharger, optimizer_steps
from trainers.batching import PromptPair
from trainers.config import TrainConfig
from trainers.recipe import TrainResult, train_lora

STUDY = "steps"
TRAIN = [PromptPair(f"Persona: I like tea {i}.\nA: Hi\nB:", f" Hello {i}.") for i in range(9)]
VAL = TRAIN[:2]
CONFIG = TrainConfig(epochs=2, batch_size=2, evals_per_epoch=2, lora_rank=4)
"""9 examples, batch 2: 5 steps per epoch, an evaluation every 2 steps and at step 10."""


@pytest.fixture
def engine(sqlite_url: str) -> sa.Engine:
    return storage.open_storage(sqlite_url)


def set_steps(engine: sa.Engine, max_steps: int | None) -> None:
    with storage.session_scope(engine) as session:
        storage.set_budget(session, STUDY, 10, max_steps=max_steps)


def used(engine: sa.Engine) -> storage.StepBudget:
    with storage.session_scope(engine) as session:
        steps = storage.step_budget(session, STUDY)
    assert steps is not None
    return steps


def test_optimizer_steps() -> None:
    assert optimizer_steps(CONFIG, 9) == (2, 10)
    assert optimizer_steps(CONFIG, 1) == (1, 2)  # never an interval of 0
    assert optimizer_steps(TrainConfig(epochs=5, batch_size=8), 64) == (2, 40)
    with pytest.raises(ValueError, match="invalid n_train=0"):
        optimizer_steps(CONFIG, 0)


def test_no_charger_without_a_step_limit(engine: sa.Engine) -> None:
    assert StepCharger.for_trial(engine, STUDY, CONFIG, 9) is None  # no budget at all
    set_steps(engine, None)
    assert StepCharger.for_trial(engine, STUDY, CONFIG, 9) is None


def charged_run(engine: sa.Engine, tiny_base: Any) -> tuple[TrainResult, StepCharger]:
    """A real training run that charges as the objective does."""
    charger = StepCharger.for_trial(engine, STUDY, CONFIG, len(TRAIN))
    assert charger is not None
    assert charger.charge_next()
    result = train_lora(
        tiny_base, CONFIG, TRAIN, VAL, report=lambda step, loss: not charger.charge_next()
    )
    return result, charger


@pytest.mark.slow
def test_charges_follow_the_recipe_and_never_trail_it(engine: sa.Engine, tiny_base: Any) -> None:
    """A complete run charges exactly the steps the recipe trained; a run whose charge is
    refused stops at that evaluation, having trained only what was charged."""
    set_steps(engine, 1000)
    result, charger = charged_run(engine, tiny_base)
    assert not result.stopped_early
    assert charger.charged == result.train_steps == 10
    assert len(result.eval_losses) == 5  # steps 2, 4, 6, 8, 10
    assert used(engine) == storage.StepBudget(1000, 10, spent=False)

    set_steps(engine, 10 + 5)  # 10 used: room for 2 intervals, the third is refused
    result, charger = charged_run(engine, tiny_base)
    assert result.stopped_early and charger.refused
    assert result.train_steps == charger.charged == 4
    assert len(result.eval_losses) == 2
    assert used(engine) == storage.StepBudget(15, 14, spent=True)


def stand_in(losses: list[float]) -> Any:
    """Reports ``losses`` like train_lora; saves a small adapter if never stopped."""

    def train(base: Any, config: TrainConfig, train: Any, val: Any, **kw: Any) -> TrainResult:
        reported = []
        for step, loss in enumerate(losses, start=1):
            reported.append((step, loss))
            if kw["report"](step, loss):
                return TrainResult(True, tuple(reported), step, 0.01)
        (kw["save_dir"] / "adapter_config.json").write_text("{}")
        return TrainResult(False, tuple(reported), len(losses), 0.01, kw["save_dir"])

    return train


def run_trial(engine: sa.Engine, root: Path, losses: list[float]) -> optuna.trial.FrozenTrial:
    """One objective call with 4 epochs of 1 train pair: one step per evaluation, 4 in all."""
    space = {"epochs": ParamSpec("categorical", choices=(4,))}
    ctx = TrialContext(
        config=StudyConfig(study=StudySection(name=STUDY), search_space=space, seed_trials=()),
        engine=engine,
        layout=storage.OutputLayout(root),
        base=None,
        train=TRAIN[:1],
        val=VAL,
        train_fn=stand_in(losses),
    )
    study = optuna.create_study(direction="minimize")
    study.optimize(Objective(ctx), n_trials=1, catch=(Exception,))
    return study.get_trials()[-1]


def test_objective_stops_a_trial_the_budget_refuses(engine: sa.Engine, tmp_path: Path) -> None:
    set_steps(engine, 2)  # 4 steps asked for
    trial = run_trial(engine, tmp_path, [1.0, 0.9, 0.8, 0.7])
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs[PRUNE_REASON_ATTR] == BUDGET_SPENT
    assert trial.last_step == 2  # it trained the 2 steps charged, reported, and stopped
    assert used(engine) == storage.StepBudget(2, 2, spent=True)

    trial = run_trial(engine, tmp_path, [1.0])  # the budget has ended: no step is trained
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs[PRUNE_REASON_ATTR] == BUDGET_SPENT
    assert trial.intermediate_values == {}


def test_objective_charges_a_complete_trial_exactly(engine: sa.Engine, tmp_path: Path) -> None:
    set_steps(engine, 4)
    trial = run_trial(engine, tmp_path, [1.0, 0.9, 0.8, 0.7])
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert records_of(engine, STUDY, [trial.number])[trial.number]["train_steps"] == 4
    assert used(engine) == storage.StepBudget(4, 4, spent=False)
