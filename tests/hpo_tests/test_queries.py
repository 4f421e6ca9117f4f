"""Read-only views of a study, on a real Optuna storage (SQLite file and PostgreSQL), with a
trial made stale by Optuna's own heartbeat sweep and retried by its own callback."""

from __future__ import annotations

import time
import warnings

import optuna
import pytest

from hpo.study.config import StudyConfig, StudySection
from hpo.study.creation import optuna_storage
from hpo.study.queries import all_trials, best_trials, retried_trial_number, study_status
from hpo.study.records import CONFIG_ATTR

NAME = "queries"
DIST = {"learning_rate": optuna.distributions.FloatDistribution(1e-6, 1e-3, log=True)}
State = optuna.trial.TrialState


def finished(state: State, lr: float, value: float | None = None, **kw: object) -> object:
    return optuna.create_trial(
        state=state, value=value, params={"learning_rate": lr}, distributions=DIST, **kw
    )


def make_stale(study: optuna.Study, rdb: optuna.storages.RDBStorage, timeout: float = 15) -> int:
    """Start a trial whose worker 'dies' after one heartbeat; wait until Optuna's sweep fails
    it (our storage's callback then re-queues it). Returns the stale trial's number."""
    trial = study.ask(DIST)
    trial_id = rdb.get_trial_id_from_study_id_trial_number(
        rdb.get_study_id_from_name(NAME), trial.number
    )
    rdb.record_heartbeat(trial_id)
    deadline = time.monotonic() + timeout
    while rdb.get_trial(trial_id).state == State.RUNNING:
        assert time.monotonic() < deadline, "the trial never went stale"
        time.sleep(0.5)
        optuna.storages.fail_stale_trials(study)
    return trial.number


@pytest.fixture
def url(storage_url: str) -> str:
    """A study with two COMPLETE trials, a seed, a PRUNED, a FAILed and a stale trial whose
    retry completed."""
    config = StudyConfig(study=StudySection(name=NAME, n_trials=6))
    with warnings.catch_warnings():
        # heartbeats are experimental, and meant for optimize (we ask and tell by hand)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        rdb = optuna_storage(storage_url, heartbeat=True, on_stale=retry, grace_period=1)
        study = optuna.create_study(study_name=NAME, storage=rdb, direction="minimize")
        study.set_user_attr(CONFIG_ATTR, config.to_dict())
        study.add_trial(finished(State.COMPLETE, 5e-4, 0.5, user_attrs={"seed_config": True}))
        study.add_trial(
            finished(State.COMPLETE, 2e-4, 0.3, user_attrs={"adapter_path": "/models/trials/q/1"})
        )
        study.add_trial(finished(State.PRUNED, 1e-6, intermediate_values={1: 2.0, 2: 2.5}))
        study.add_trial(
            finished(State.FAIL, 1e-3, user_attrs={"fail_reason": "RuntimeError: boom"})
        )
        stale = make_stale(study, rdb)
        retried = study.ask()  # Optuna hands out the re-queued trial first
        assert retried_trial_number(study.get_trials()[retried.number]) == stale
        study.tell(retried, 0.4)
    return storage_url


def test_all_trials_explain_failures_pruning_and_retries(url: str) -> None:
    with warnings.catch_warnings():
        # the experimental marker of Optuna's retry helper does not reach our users
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
        rows = all_trials(url, NAME)
    assert [(r.number, r.state) for r in rows] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
        (2, "PRUNED"),
        (3, "FAIL"),
        (4, "FAIL"),
        (5, "COMPLETE"),
    ]
    assert [r.note for r in rows] == [
        "",
        "",
        "pruned at evaluation 2 (eval_loss 2.5000)",
        "RuntimeError: boom",
        "worker lost (no heartbeat)",
        "retry of trial 4",
    ]
    assert rows[5].params == rows[4].params
    assert [r.seed_config for r in rows] == [True, False, False, False, False, False]
    assert rows[1].adapter_path == "/models/trials/q/1"
    assert rows[1].to_dict()["value"] == pytest.approx(0.3)


def test_best_trials_and_status(url: str) -> None:
    assert [(r.number, r.value) for r in best_trials(url, NAME, 3)] == [
        (1, pytest.approx(0.3)),
        (5, pytest.approx(0.4)),
        (0, pytest.approx(0.5)),
    ]
    assert [r.number for r in best_trials(url, NAME, 10)] == [1, 5, 0]
    status = study_status(url, NAME)
    assert status.n_trials_target == 6
    assert status.counts == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 2}
    assert status.finished == 4
    assert status.best is not None and status.best.number == 1


def test_retried_trial_number_of_a_retry_of_a_retry_names_the_first(sqlite_url: str) -> None:
    study = optuna.create_study(study_name=NAME, storage=optuna_storage(sqlite_url))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
    study.add_trial(finished(State.FAIL, 1e-4))
    retry(study, study.get_trials()[0])
    first_retry = study.ask()
    study.tell(first_retry, state=State.FAIL)
    retry(study, study.get_trials()[first_retry.number])
    trials = study.get_trials()
    assert [retried_trial_number(t) for t in trials] == [None, 0, 0]
    assert trials[2].state == State.WAITING
