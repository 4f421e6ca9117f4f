"""A worker killed with SIGKILL mid-trial: its trial goes stale, is failed and retried with the
same parameters by the surviving worker, and the study still ends with exactly the trials
asked for (reliability.md, first row of the fault matrix)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import optuna
import pytest

from hpo.study.queries import retried_trial_number
from hpo.workers.launch import WorkerProcess, wait_for_workers
from hpo.workers.objective import WORKER_ATTR
from tests.hpo_tests.invariants import check_invariants
from tests.hpo_tests.test_workers import (
    long_study_config,
    prepare,
    start_worker,
    wait_for_training,
)

GRACE = 6


def _start(url: str, name: str, index: int, root: Path) -> WorkerProcess:
    return start_worker(url, name, index, root, GRACE)


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_mid_trial_is_retried_and_budget_stays_exact(pg_url: str, tmp_path: Path) -> None:
    n_trials = 5
    config = long_study_config(name="kill", n_trials=n_trials)
    prepare(pg_url, tmp_path, config)
    victim = _start(pg_url, "kill", 0, tmp_path)
    killed = wait_for_training(pg_url, "kill")
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=30)

    survivor = _start(pg_url, "kill", 1, tmp_path)
    assert wait_for_workers([survivor], interval=0.5) == [0], survivor.log_path.read_text()[-3000:]

    trials = check_invariants(pg_url, "kill", n_trials, output_root=tmp_path)
    stale = next(t for t in trials if t.number == killed.number)
    assert stale.state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if retried_trial_number(t) == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params
    assert retried[0].state != optuna.trial.TrialState.FAIL
    # the killed worker started the trial, the survivor ran its retry
    assert stale.user_attrs[WORKER_ATTR] == 0
    assert retried[0].user_attrs[WORKER_ATTR] == 1
    # the killed trial's partial adapter is never referenced, and its temp folder is gone
    # (check_invariants: no .tmp- folder left under models/trials/kill)
    assert "adapter_path" not in stale.user_attrs
