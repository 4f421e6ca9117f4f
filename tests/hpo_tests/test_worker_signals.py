"""SIGTERM stops a worker cleanly: its running trial is failed at once, not left RUNNING,
re-queued with the same parameters (a seed config is never lost), and its budget ticket is
given back so that the study still ends with the trials asked for."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import optuna
import pytest

import storage
from hpo.study.creation import load_study, optuna_storage
from hpo.study.queries import retried_trial_number
from hpo.workers.launch import start_workers, wait_for_workers
from tests.hpo_tests.invariants import check_invariants, long_fields
from tests.hpo_tests.test_workers import (
    exit_lines,
    launch_process,
    long_study_config,
    prepare,
    wait_for_training,
)


@pytest.mark.slow
def test_sigterm_fails_the_running_trial_and_frees_its_ticket(
    sqlite_url: str, tmp_path: Path
) -> None:
    """SIGTERM to `hpo launch --workers 2` (docker stop, a scheduler) reaches both workers:
    each fails and re-queues its running trial and exits 130; the launcher waits for them,
    prints one line per worker and exits 130."""
    config = long_study_config(name="sigterm", n_trials=3)
    prepare(sqlite_url, tmp_path, config)
    log = tmp_path / "launch.log"
    launcher = launch_process(sqlite_url, "sigterm", tmp_path, log, "--workers", "2")
    try:
        interrupted = wait_for_training(sqlite_url, "sigterm")
        running = _wait_for_running(sqlite_url, "sigterm", 2)  # each worker holds a trial
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    lines = exit_lines(log.read_text())
    assert len(lines) == 2, log.read_text()[-3000:]
    for line in lines:
        assert ": exit 130 (stopped by signal: its running trial, if any, re-queued)" in line
    logs = tmp_path / "logs"
    assert all("stopped by signal" in p.read_text() for p in logs.glob("sigterm-worker-*.log"))

    study, _ = load_study(sqlite_url, "sigterm")
    states = [t.state for t in study.get_trials()]
    assert optuna.trial.TrialState.RUNNING not in states
    assert optuna.trial.TrialState.FAIL in states
    failed = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.FAIL]
    # each worker's running trial (unless it ended before the signal came) failed by the
    # signal and re-queued with its parameters
    assert {t.number for t in failed} <= {t.number for t in running}
    for trial in failed:
        assert "signal" in str(long_fields(sqlite_url, "sigterm", trial).get("fail_reason", ""))
        [copy] = [t for t in study.get_trials() if retried_trial_number(t) == trial.number]
        assert copy.state == optuna.trial.TrialState.WAITING and copy.params == trial.params
    # re-queued at once with the same parameters: the plan's config is not lost
    [retry] = [t for t in study.get_trials() if retried_trial_number(t) == interrupted.number]
    assert retry.state == optuna.trial.TrialState.WAITING
    assert retry.params == interrupted.params
    assert retry.user_attrs.get("seed_config") == interrupted.user_attrs.get("seed_config")
    assert "fail_reason" not in retry.user_attrs
    engine = storage.open_storage(sqlite_url)
    finished = sum(
        s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states
    )
    with storage.session_scope(engine) as session:
        assert storage.budget(session, "sigterm") == (3, finished)
    # no half-written adapter: only complete trials have a directory
    trial_dirs = tmp_path / "models" / "trials" / "sigterm"
    done = {
        str(t.number) for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE
    }
    present = {p.name for p in trial_dirs.iterdir()} if trial_dirs.exists() else set()
    assert {p for p in present if not p.startswith(".")} == done

    # new workers finish the study with exactly the trials asked for
    codes = wait_for_workers(
        start_workers(sqlite_url, "sigterm", n_workers=2, output_root=tmp_path), interval=0.5
    )
    assert codes == [0, 0]
    trials = check_invariants(sqlite_url, "sigterm", 3, output_root=tmp_path)
    assert next(t for t in trials if t.number == retry.number).state != (
        optuna.trial.TrialState.FAIL
    )
    seeds = [t.params for t in study.get_trials() if t.user_attrs.get("seed_config")]
    ran = [t.params for t in trials if t.state != optuna.trial.TrialState.FAIL]
    assert all(seed in ran for seed in seeds), "a seed config of the plan never ran"


def _wait_for_running(url: str, name: str, n: int) -> list[optuna.trial.FrozenTrial]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        study, _ = load_study(url, name)
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        if len(running) >= n:
            return running
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} trials of {name} running after 120 s")


@pytest.mark.slow
def test_trial_failed_elsewhere_is_dropped_and_the_worker_goes_on(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Optuna's heartbeat thread dies quietly on a database error; the live trial then looks
    stale and another worker fails and re-queues it. The first worker must notice (its next
    report raises), drop the trial without saving or telling, and carry on."""
    from hpo.workers.stop import StaleTrialHandler

    config = long_study_config(name="elsewhere", n_trials=3)
    prepare(sqlite_url, tmp_path, config)
    [worker] = start_workers(sqlite_url, "elsewhere", n_workers=1, output_root=tmp_path)
    running = wait_for_training(sqlite_url, "elsewhere")
    rdb = optuna_storage(sqlite_url)
    study, _ = load_study(sqlite_url, "elsewhere", rdb=rdb)
    trial_id = rdb.get_trial_id_from_study_id_trial_number(
        rdb.get_study_id_from_name("elsewhere"), running.number
    )
    # what optuna.storages.fail_stale_trials does in another worker, with our callback
    assert rdb.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    StaleTrialHandler(storage.open_storage(sqlite_url), "elsewhere")(study, rdb.get_trial(trial_id))

    codes = wait_for_workers([worker], interval=0.5)
    assert codes == [0], worker.log_path.read_text()[-3000:]
    assert "finished by another worker" in worker.log_path.read_text()
    trials = check_invariants(sqlite_url, "elsewhere", 3, output_root=tmp_path)
    dropped = next(t for t in trials if t.number == running.number)
    assert dropped.state == optuna.trial.TrialState.FAIL
    assert "adapter_path" not in dropped.user_attrs
    assert [retried_trial_number(t) for t in trials].count(running.number) == 1
