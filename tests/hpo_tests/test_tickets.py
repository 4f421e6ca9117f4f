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


def test_a_signal_inside_a_budget_update_is_raised_after_it_even_with_other_threads() -> None:
    """Linux hands a process's SIGTERM to any thread that does not block it, and Python runs
    the handler in the main thread at once: with a thread beside it (torch's OpenMP pool,
    Optuna's heartbeat), a signal mask on the main thread deferred nothing. The handler now
    waits for the end of the outermost block, then stops the worker."""
    import os
    import signal
    import threading

    import pytest

    from hpo.workers.stop import WorkerStopped, raise_stop
    from hpo.workers.tickets import signals_deferred

    beside = threading.Event()
    thread = threading.Thread(target=beside.wait, args=(10,))
    thread.start()
    previous = signal.signal(signal.SIGTERM, raise_stop)
    steps: list[str] = []
    try:
        with pytest.raises(WorkerStopped):
            with signals_deferred():
                with signals_deferred():  # give_back inside the trial's end: nested
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.2)  # the handler has run by now
                    steps.append("inner done")
                steps.append("outer done")
            steps.append("after")
        with signals_deferred():
            steps.append("nothing pending")
    finally:
        signal.signal(signal.SIGTERM, previous)
        beside.set()
        thread.join()
    assert steps == ["inner done", "outer done", "nothing pending"]
