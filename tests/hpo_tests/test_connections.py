"""Connections for many workers: a worker holds no server connection while it trains, and
workers through PgBouncer in transaction mode keep every guarantee (an exact budget, a killed
worker's trial re-run, race-safe study creation under the transaction-level lock)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

import storage
from hpo.study.creation import create_study
from hpo.study.queries import retried_trial_number
from hpo.workers.launch import (
    WorkerProcess,
    wait_for_workers,
)
from storage.locks import database_lock
from tests.conftest import import_and_cluster
from tests.hpo_tests.invariants import check_invariants, count_connections
from tests.hpo_tests.test_workers import long_study_config, start_worker, wait_for_training
from tests.servers import PgBouncer, pgbouncer, pgbouncer_binary

GRACE = 6


def _start(url: str, name: str, index: int, root: Path) -> WorkerProcess:
    return start_worker(url, name, index, root, GRACE)


def _sample(url: str, seconds: float) -> list[int]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(count_connections(url))
        time.sleep(0.05)
    return samples


@pytest.fixture
def bouncer() -> PgBouncer:
    if pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed (make install installs Debian's package as root)")
    with pgbouncer() as running:
        yield running  # type: ignore[misc]


def test_engines_on_postgresql_keep_no_idle_connection(pg_url: str) -> None:
    engine = storage.open_storage(pg_url)
    with storage.session_scope(engine) as session:
        session.execute(sa.text("SELECT 1"))
    storage.budget  # noqa: B018 - the module is loaded; nothing else holds a connection
    assert count_connections(pg_url) == 0
    rdb_kwargs = storage.engine_options(pg_url)
    assert rdb_kwargs["poolclass"] is sa.pool.NullPool
    assert rdb_kwargs["connect_args"]["prepare_threshold"] is None


@pytest.mark.slow
@pytest.mark.postgres
def test_a_training_worker_holds_no_server_connection_most_of_the_time(
    pg_url: str, tmp_path: Path, tiny_base: object
) -> None:
    config = long_study_config(name="idle", n_trials=2)
    import_and_cluster(pg_url, tmp_path, "small", k=3)
    create_study(config, pg_url)
    storage.dispose_engines()
    worker = _start(pg_url, "idle", 0, tmp_path)
    try:
        wait_for_training(pg_url, "idle")
        samples = _sample(pg_url, 3.0)
    finally:
        worker.process.terminate()
        worker.process.wait(timeout=60)
    # a pooled worker held 3 connections all the time; now only while a query runs
    assert samples.count(0) >= len(samples) // 2, samples
    assert max(samples) <= 3, samples


@pytest.mark.postgres
def test_the_database_lock_serializes_through_pgbouncer(pg_url: str, bouncer: PgBouncer) -> None:
    url = bouncer.url(pg_url)
    engine = storage.create_engine(url)
    inside: list[str] = []
    overlap: list[bool] = []

    def hold(tag: str) -> None:
        with database_lock(engine, "create-study"):
            overlap.append(bool(inside))
            inside.append(tag)
            time.sleep(0.3)
            inside.remove(tag)

    threads = [threading.Thread(target=hold, args=(str(i),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert overlap == [False] * 4
    # released at the end of its transaction: taken again at once, through any server connection
    with database_lock(engine, "create-study"):
        pass
    storage.dispose_engines()


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_through_pgbouncer_keep_the_budget_and_rerun_a_killed_trial(
    pg_url: str, bouncer: PgBouncer, tmp_path: Path, tiny_base: object
) -> None:
    url = bouncer.url(pg_url)
    n_trials = 4
    config = long_study_config(name="pooled", n_trials=n_trials)
    import_and_cluster(url, tmp_path, "small", k=3)
    create_study(config, url)
    storage.dispose_engines()
    victim = _start(url, "pooled", 0, tmp_path)
    killed = wait_for_training(url, "pooled")
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=30)
    survivors = [_start(url, "pooled", i, tmp_path) for i in (1, 2)]
    codes = wait_for_workers(survivors, interval=0.5)
    assert codes == [0, 0], "\n".join(w.log_path.read_text()[-3000:] for w in survivors)

    trials = check_invariants(url, "pooled", n_trials, output_root=tmp_path)
    stale = next(t for t in trials if t.number == killed.number)
    assert stale.state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if retried_trial_number(t) == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params
    assert "prepared statement" not in bouncer.log()
