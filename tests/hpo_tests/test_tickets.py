"""Failing stale trials: Optuna's function, quietly."""

from __future__ import annotations

import time
import warnings

import optuna

from hpo.workers.tickets import fail_stale_trials


def test_fails_a_stale_trial_without_an_experimental_warning(sqlite_url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(sqlite_url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=rdb, study_name="stale")
    trial = study.ask()  # a worker that beats once, then dies
    study_id = rdb.get_study_id_from_name("stale")
    rdb.record_heartbeat(rdb.get_trial_id_from_study_id_trial_number(study_id, trial.number))
    time.sleep(2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fail_stale_trials(study)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
