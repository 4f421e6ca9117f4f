"""The report callback: every eval_loss to ``report``, stop on request or on a non-finite loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainers.report import NonFiniteLossError, RunLog, log_file, report_callback


def _trainer_objects(global_step: int) -> tuple[Any, Any]:
    from transformers import TrainerControl, TrainerState

    return TrainerState(global_step=global_step), TrainerControl()


def test_every_evaluation_is_reported_with_its_count_and_step() -> None:
    seen: list[tuple[int, float]] = []
    run = RunLog(report=lambda step, loss: seen.append((step, loss)) is None and False)
    callback = report_callback(run)
    for global_step, loss in ((3, 2.5), (6, 2.0)):
        state, control = _trainer_objects(global_step)
        callback.on_evaluate(None, state, control, metrics={"eval_loss": loss})
        assert not control.should_training_stop
    assert seen == run.losses == [(1, 2.5), (2, 2.0)]
    assert run.last_eval_step == 6
    assert not run.stopped_early
    run.check_finite()


def test_report_true_stops_the_trainer() -> None:
    run = RunLog(report=lambda step, loss: step == 2)
    callback = report_callback(run)
    stops = []
    for global_step in (1, 2):
        state, control = _trainer_objects(global_step)
        callback.on_evaluate(None, state, control, metrics={"eval_loss": 1.0})
        stops.append(control.should_training_stop)
    assert stops == [False, True]
    assert run.stopped_early


def test_a_finished_run_is_never_stopped_at_its_last_evaluation() -> None:
    """Seen on real data: a trial pruned at its final evaluation, after its training had
    finished, so its adapter was thrown away. The last eval_loss is still reported."""
    from transformers import TrainerControl, TrainerState

    reported: list[int] = []
    run = RunLog(report=lambda step, loss: reported.append(step) is None)  # always "prune"
    callback = report_callback(run)
    control = TrainerControl()
    callback.on_evaluate(
        None, TrainerState(global_step=10, max_steps=10), control, metrics={"eval_loss": 1.0}
    )
    assert reported == [1] and run.losses == [(1, 1.0)]
    assert not control.should_training_stop and not run.stopped_early
    callback.on_evaluate(
        None, TrainerState(global_step=5, max_steps=10), control, metrics={"eval_loss": 1.0}
    )
    assert control.should_training_stop and run.stopped_early  # before the end it stops


@pytest.mark.parametrize(
    ("hook", "kwargs", "named"),
    [
        ("on_evaluate", {"metrics": {"eval_loss": float("nan")}}, "eval_loss nan at evaluation 1"),
        ("on_evaluate", {"metrics": {}}, "eval_loss nan at evaluation 1"),
        ("on_log", {"logs": {"loss": float("inf")}}, "train loss inf at step 4"),
    ],
)
def test_non_finite_loss_stops_and_raises_naming_it(
    hook: str, kwargs: dict[str, Any], named: str
) -> None:
    reported: list[int] = []
    run = RunLog(report=lambda step, loss: reported.append(step) is None and False)
    state, control = _trainer_objects(4)
    getattr(report_callback(run), hook)(None, state, control, **kwargs)
    assert control.should_training_stop
    assert reported == [] and run.losses == []
    with pytest.raises(NonFiniteLossError, match=named):
        run.check_finite()


def test_log_lines_go_to_the_file_after_the_config(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "train.log"
    with log_file(path, {"epochs": 2}) as handle:
        run = RunLog(log_file=handle)
        state, control = _trainer_objects(5)
        report_callback(run).on_log(None, state, control, logs={"loss": 1.23456789, "epoch": 1})
    assert path.read_text().splitlines() == [
        f"config {json.dumps({'epochs': 2})}",
        "step=5 loss=1.23457 epoch=1",
    ]
    with log_file(None, {}) as nothing:
        assert nothing is None
