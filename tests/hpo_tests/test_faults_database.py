"""Workers ride out a database outage: a PostgreSQL restart shorter than the grace period
loses no trial; past the grace period the workers exit with one line naming the database.

The server is one this module starts itself (initdb into a temporary folder, another port,
run as the ``postgres`` user when we are root), so that the shared server is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

import storage
from hpo.study.queries import retried_trial_number
from hpo.workers.launch import WorkerProcess, wait_for_workers
from tests.hpo_tests.invariants import check_invariants
from tests.hpo_tests.test_workers import (
    exit_lines,
    launch_process,
    prepare,
    small_study_config,
    start_worker,
    wait_for_training,
)

# --- the guard itself, with a fake clock -------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _refused() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))


def _flaky(failures: int) -> Callable[[], str]:
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise storage.StorageError("database error") from _refused()
        return "answer"

    return call


def test_guard_waits_out_a_short_outage_with_growing_pauses() -> None:
    clock = _Clock()
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock.sleep(seconds)

    guard = storage.OutageGuard("postgresql://u:pw@db/hpo", 20, clock=clock, sleep=sleep)
    assert guard.call(_flaky(5)) == "answer"
    assert pauses == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert guard.down_for is None and not guard.gave_up


def test_guard_gives_up_past_its_patience_and_then_fails_at_once() -> None:
    clock = _Clock()
    guard = storage.OutageGuard("postgresql://u:pw@db/hpo", 6, clock=clock, sleep=clock.sleep)
    with pytest.raises(storage.DatabaseUnavailable) as caught:
        guard.call(_flaky(100))
    message = str(caught.value)
    assert "postgresql://u:***@db/hpo" in message and "pw" not in message.replace("***", "")
    assert "unreachable for 6 s" in message and "connection refused" in message
    assert guard.gave_up
    spent = clock.now
    with pytest.raises(storage.DatabaseUnavailable):
        guard.call(_flaky(1))  # past the patience: no more waiting
    assert clock.now == spent
    assert guard.call(lambda: 1) == 1  # an answer ends the outage
    assert not guard.gave_up


def test_guard_raises_other_errors_at_once() -> None:
    guard = storage.OutageGuard("sqlite:///x.db", 6, sleep=lambda s: pytest.fail("slept"))
    integrity = sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    for error in (ValueError("bad"), storage.StorageError("no"), integrity):

        def fail(error: Exception = error) -> None:
            raise error

        with pytest.raises(type(error)):
            guard.call(fail)
    assert not storage.is_disconnect(integrity)
    wrapped = optuna.exceptions.StorageInternalError("An exception is raised during the commit")
    wrapped.__cause__ = _refused()  # how Optuna's storage reports a lost connection
    assert storage.is_disconnect(wrapped)
    with pytest.raises(ValueError, match="patience"):
        storage.OutageGuard("sqlite:///x.db", 0)


# --- a PostgreSQL server of our own ---------------------------------------------------------


@dataclass
class OwnServer:
    """A PostgreSQL server in a temporary folder, run as the postgres user."""

    bin_dir: Path
    data_dir: Path
    port: int

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if _is_root() else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=60)

    def pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-o", options, "-l", str(self.data_dir / "server.log"), "-w", "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


def _is_root() -> bool:

    return os.geteuid() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def own_server() -> Iterator[OwnServer]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    if not found[-1]:
        pytest.skip("no PostgreSQL server binaries (initdb) on this machine")
    bin_dir = Path(str(found[-1])).parent
    folder = Path(tempfile.mkdtemp(prefix="hpo-own-pg-"))
    if _is_root():
        shutil.chown(folder, "postgres", "postgres")
    server = OwnServer(bin_dir, folder / "data", _free_port())
    server._run(str(bin_dir / "initdb"), "-D", str(server.data_dir), "-A", "trust")
    server._run(str(bin_dir / "initdb"), "--version")
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_every_call_optuna_makes_through_its_cache_waits_out_an_outage(
    own_server: OwnServer,
) -> None:
    """Optuna wraps our RDB storage in its cache, which calls private methods (ask, suggest,
    `get_trials`, `best_trial`, the stale-trial sweep) instead of the public ones we guarded:
    an outage between a report and the pruner's look at the study failed the trial (CI).
    Each of those calls, started while the server is down, returns once it is back."""
    import threading

    from hpo.study.creation import optuna_storage

    url = own_server.create_database("cached_calls")
    guard = storage.OutageGuard(url, patience=60)
    rdb = optuna_storage(url, heartbeat=True, grace_period=60, guard=guard)
    study = optuna.create_study(study_name="cached", storage=rdb)
    done = study.ask()
    done.suggest_float("x", 0, 1)
    study.tell(done, 0.5)
    running = study.ask()
    calls: dict[str, Callable[[], object]] = {
        "ask": lambda: study.ask().number,
        "suggest": lambda: running.suggest_float("y", 0, 1) is not None,
        "get_trials": lambda: len(study.get_trials()),
        "best_trial": lambda: study.best_trial.number,
        "stale sweep": lambda: optuna.storages.fail_stale_trials(study) is None,
    }
    answers: dict[str, object] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str) -> None:
        try:
            answers[name] = calls[name]()
        except BaseException as exc:  # reported by the assertion below
            errors[name] = exc

    storage.dispose_engines()
    rdb.engine.dispose()
    own_server.stop()
    try:
        threads = [threading.Thread(target=run, args=(name,)) for name in calls]
        for thread in threads:
            thread.start()
        time.sleep(3)
        assert guard.down_for is not None  # the calls met the outage
    finally:
        own_server.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == {}, {name: repr(exc)[:300] for name, exc in errors.items()}
    assert answers["best_trial"] == done.number and answers["suggest"] is True
    assert answers["get_trials"] in (2, 3) and answers["ask"] in (2, 3)
    assert guard.down_for is None


GRACE = 30
"""The workers' grace period in the short outage: longer than the outage, a heartbeat interval
(10 s) and a retry pause (4 s) with room to spare; at 20 s a full run on loaded cores saw a
heartbeat go stale across the 5 s outage, and the trial was failed and re-queued."""


def _start(url: str, name: str, index: int, root: Path, grace: int) -> WorkerProcess:
    return start_worker(url, name, index, root, grace)


def _logs(workers: list[WorkerProcess]) -> str:
    return "\n".join(w.log_path.read_text()[-3000:] for w in workers)


@pytest.mark.slow
@pytest.mark.postgres
def test_launch_and_its_workers_wait_out_a_restart_and_lose_no_trial(
    own_server: OwnServer, tmp_path: Path
) -> None:
    """`hpo launch --workers 2` while PostgreSQL stops for 5 s mid-trial and starts again:
    the workers wait it out and the launcher with them (it used to exit 1 at the first
    restart, leaving its workers without a supervisor), then reports each worker's exit 0
    and exits 0 with exactly the trials asked for."""
    url = own_server.create_database("restart")
    n_trials = 6
    prepare(url, tmp_path, small_study_config(name="restart", n_trials=n_trials))
    log = tmp_path / "launch.log"
    launcher = launch_process(url, "restart", tmp_path, log, "--workers", "2", grace=GRACE)
    try:
        wait_for_training(url, "restart")
        storage.dispose_engines()  # this process's pool would otherwise hold dead connections
        own_server.stop()
        time.sleep(5)  # an outage, not only a restart; the launcher polls every 2 s
        own_server.start()
        code = launcher.wait(timeout=600)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "unreachable" in output and "answers again" in output, output[-3000:]  # the launcher's
    lines = exit_lines(output)
    assert len(lines) == 2 and all(line.endswith(": exit 0 (done)") for line in lines), output
    # Whole logs: the outage's lines are followed by later trials' reports.
    workers = "\n".join(p.read_text() for p in (tmp_path / "logs").glob("restart-*.log"))
    assert "unreachable" in workers and "answers again" in workers, workers[-6000:]
    trials = check_invariants(url, "restart", n_trials, output_root=tmp_path)
    assert [t for t in trials if t.state == optuna.trial.TrialState.FAIL] == []


@pytest.mark.slow
@pytest.mark.postgres
def test_an_outage_past_the_grace_period_ends_workers_with_one_line(
    own_server: OwnServer, tmp_path: Path
) -> None:
    url = own_server.create_database("outage")
    grace, n_trials = 6, 4
    prepare(url, tmp_path, small_study_config(name="outage", n_trials=n_trials))
    workers = [_start(url, "outage", i, tmp_path, grace) for i in range(2)]
    try:
        running = wait_for_training(url, "outage")
        storage.dispose_engines()
        own_server.stop()
        started = time.monotonic()
        codes = wait_for_workers(workers, interval=0.5)
        waited = time.monotonic() - started
    finally:
        for w in workers:
            if w.process.poll() is None:
                w.process.kill()
        own_server.start()
    assert codes == [1, 1], _logs(workers)
    assert grace <= waited < grace + 30, waited
    for w in workers:
        last = w.log_path.read_text().strip().splitlines()[-1]
        assert last.startswith("hpo: error: database postgresql+psycopg://postgres@"), last
        assert f":{own_server.port}/outage unreachable for" in last, last

    # the database is back: a new worker fails the lost trials as stale, re-queues them with
    # the same parameters and finishes the study with the trials asked for
    survivor = _start(url, "outage", 2, tmp_path, grace)
    assert wait_for_workers([survivor], interval=0.5) == [0], _logs([survivor])
    trials = check_invariants(url, "outage", n_trials, output_root=tmp_path)
    lost = next(t for t in trials if t.number == running.number)
    assert lost.state == optuna.trial.TrialState.FAIL
    [retry] = [t for t in trials if retried_trial_number(t) == lost.number]
    assert retry.params == lost.params
