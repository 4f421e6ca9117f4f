"""The evaluator, per-persona training and the report ride out a database outage as the
workers do: a PostgreSQL restart shorter than their patience is waited out; past it they exit 1
with one line naming the database, password masked.

The server is the one :mod:`tests.hpo_tests.test_faults_database` starts itself, never the
shared one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import storage
from hpo.personas.training import PERSONA_ATTR, personas_study_name
from hpo.study.config import StudyConfig, StudySection
from hpo.study.creation import create_study
from tests.conftest import import_and_cluster
from tests.hpo_tests.test_evaluator import (
    SHORT,
    adapters,  # noqa: F401  (a fixture)
    add_trial,
    check_runs,
    make_study,
)
from tests.hpo_tests.test_faults_database import (
    OwnServer,
    own_server,  # noqa: F401  (a fixture)
)

TrialState = optuna.trial.TrialState
PASSWORD = "s3cret-pw"
"""In the URL the processes are given (the server trusts local users): never in a log."""


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def _hpo(args: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hpo", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HPO_STORAGE": _with_password(url)},
        )


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def _outage(server: OwnServer, seconds: float) -> None:
    storage.dispose_engines()  # this process's pool would otherwise hold dead connections
    server.stop()
    time.sleep(seconds)
    server.start()


def _watch(name: str, root: Path, log: Path, url: str, patience: float) -> subprocess.Popen[bytes]:
    args = ["evaluator", "--study", name, "--watch", "--poll-interval", "0.2"]
    args += ["--patience", str(patience), "--output-root", str(root)]
    return _hpo(args, url, log)


def _back_after(
    server: OwnServer, proc: subprocess.Popen[bytes], *, down: float, timeout: float
) -> int:
    """Start the stopped ``server`` again after ``down`` seconds and wait for ``proc`` to
    exit; its exit code (killed if it outlives ``timeout``)."""
    try:
        time.sleep(down)
        server.start()
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_evaluator_once_waits_out_a_restart_before_it_connects(
    own_server: OwnServer,  # noqa: F811
    tmp_path: Path,
    adapters: list[Path],  # noqa: F811
) -> None:
    """The server is down when ``hpo evaluator --once`` starts and comes back 4 s later:
    the evaluator waits, then evaluates the due trial and the baselines and exits 0."""
    url = own_server.create_database("once_restart")
    make_study(url, tmp_path, "once")
    number = add_trial(url, tmp_path, "once", adapters[0], 0.9)
    storage.dispose_engines()
    own_server.stop()
    log = tmp_path / "evaluator.log"
    args = ["evaluator", "--study", "once", "--once", "--top-trials", "1"]
    args += ["--output-root", str(tmp_path), "--max-new-tokens", str(SHORT.max_new_tokens)]
    proc = _hpo([*args, "--batch-size", str(SHORT.batch_size)], url, log)
    code = _back_after(own_server, proc, down=4, timeout=900)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "unreachable" in text and "answers again" in text, text[-3000:]
    assert f"evaluated here: trial:{number}, baselines" in text, text[-3000:]
    assert "results: " in text and PASSWORD not in text
    runs = check_runs_any(url, "once")
    assert sorted(r.trial_number for r in runs if r.trial_number >= 0) == [number]


@pytest.mark.slow
def test_a_busy_evaluator_once_waits_out_a_restart_mid_evaluation(
    own_server: OwnServer,  # noqa: F811
    tmp_path: Path,
    adapters: list[Path],  # noqa: F811
) -> None:
    """The server stops for 8 s while `hpo evaluator --once` evaluates a trial: the pass
    runs again once it answers (its own lease re-taken, the stored results resumed); it exits 0
    with every run complete, no duplicate result rows and every lease given back."""
    url = own_server.create_database("once_busy")
    make_study(url, tmp_path, "busy")
    number = add_trial(url, tmp_path, "busy", adapters[1], 0.8)
    log = tmp_path / "evaluator.log"
    args = ["evaluator", "--study", "busy", "--once", "--top-trials", "1"]
    args += ["--output-root", str(tmp_path), "--max-new-tokens", str(SHORT.max_new_tokens)]
    proc = _hpo([*args, "--batch-size", str(SHORT.batch_size)], url, log)
    try:
        _wait_for(log, f"evaluating trial {number} of busy", proc, 300)
        # Down for 8 s at least, and until the evaluator has met the outage: on loaded cores
        # its next database call can come after 8 s (while it trains a baseline adapter).
        storage.dispose_engines()
        own_server.stop()
        time.sleep(8)
        _wait_for(log, "unreachable", proc, 300)
        own_server.start()
        code = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "unreachable" in text and "answers again" in text, text[-3000:]
    assert f"evaluated here: trial:{number}, baselines" in text, text[-3000:]
    assert PASSWORD not in text
    runs = check_runs_any(url, "busy")
    assert sorted(r.trial_number for r in runs if r.trial_number >= 0) == [number]


def check_runs_any(url: str, name: str) -> list[storage.RunInfo]:
    """Every run of the study complete with one result per example, every lease given back."""
    with storage.session_scope(storage.open_storage(url)) as session:
        runs = storage.list_evaluation_runs(session, name)
    n_items = {r.n_examples for r in runs}
    assert len(n_items) == 1, runs
    return check_runs(url, name, n_items.pop())


@pytest.mark.slow
def test_an_idle_evaluator_rides_out_a_30s_outage_and_past_its_patience_exits_1(
    own_server: OwnServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """`hpo evaluator --watch --patience 50`: the server is down for 30 s; the evaluator
    waits and goes on polling. With `--patience 5` an outage ends it with exit 1 and one line
    naming the database, password masked."""
    url = own_server.create_database("idle_outage")
    make_study(url, tmp_path, "idle")
    log = tmp_path / "patient.log"
    proc = _watch("idle", tmp_path, log, url, patience=50)
    try:
        time.sleep(8)  # started and polling
        assert proc.poll() is None, log.read_text()[-3000:]
        _outage(own_server, 30)
        _wait_for(log, "answers again", proc, 40)
        time.sleep(2)
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert "Traceback" not in text and PASSWORD not in text, text[-3000:]

    short_log = tmp_path / "impatient.log"
    proc = _watch("idle", tmp_path, short_log, url, patience=5)
    try:
        time.sleep(8)
        assert proc.poll() is None, short_log.read_text()[-3000:]
        storage.dispose_engines()
        own_server.stop()
        started = time.monotonic()
        code = proc.wait(timeout=60)
        waited = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        own_server.start()
    text = short_log.read_text()
    assert code == 1 and 5 <= waited < 30, (code, waited, text[-3000:])
    last = text.strip().splitlines()[-1]
    prefix = f"hpo: error: database postgresql+psycopg://postgres:***@127.0.0.1:{own_server.port}"
    assert last.startswith(f"{prefix}/idle_outage unreachable for"), last
    assert "an evaluator waits (--patience)" in last and PASSWORD not in text, last


def _wait_for_running(url: str, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the study ``name`` has a RUNNING trial (training under way)."""
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            study = optuna.load_study(study_name=name, storage=url)
        except KeyError:
            study = None
        if study is not None and study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        time.sleep(0.5)


@pytest.mark.slow
def test_personas_train_waits_out_a_restart_mid_training(
    own_server: OwnServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The server stops for 4 s while a persona adapter trains: `hpo personas train` waits
    it out and ends with exactly one COMPLETE trial per persona, none left RUNNING."""
    url = own_server.create_database("personas_restart")
    import_and_cluster(url, tmp_path, "demo", k=5)
    create_study(StudyConfig(study=StudySection(name="c0", k=5, cluster_id=4, n_trials=2)), url)
    log = tmp_path / "personas.log"
    args = ["personas", "train", "--study", "c0", "--epochs", "1", "--threads", "1"]
    proc = _hpo([*args, "--max-train-per-persona", "2", "--output-root", str(tmp_path)], url, log)
    try:
        _wait_for_running(url, personas_study_name("c0"), proc, log)
        _outage(own_server, 4)
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "unreachable" in text and "answers again" in text and PASSWORD not in text
    trials = optuna.load_study(study_name=personas_study_name("c0"), storage=url).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    complete = [t.user_attrs[PERSONA_ATTR] for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == len(set(complete)) == len({t.user_attrs[PERSONA_ATTR] for t in trials})
    storage.dispose_engines()


@pytest.mark.slow
def test_report_waits_out_a_restart_before_it_connects(
    own_server: OwnServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The server is down when `hpo report` starts and back 4 s later: the report is
    written (every method listed as not evaluated yet) and it exits 0."""
    url = own_server.create_database("report_restart")
    make_study(url, tmp_path, "rep")
    storage.dispose_engines()
    own_server.stop()
    log = tmp_path / "report.log"
    proc = _hpo(["report", "--study", "rep", "--no-png", "--output-root", str(tmp_path)], url, log)
    code = _back_after(own_server, proc, down=4, timeout=300)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "decision: " in text and PASSWORD not in text, text[-3000:]
    assert (tmp_path / "results/rep/comparison").is_dir()


@pytest.mark.slow
def test_moe_merge_waits_out_a_restart_before_it_connects(
    own_server: OwnServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The server is down when `hpo moe merge` starts and back 4 s later: it merges every
    persona's variants, publishes the results file and exits 0."""
    from hpo.personas.training import train_persona_adapters

    url = own_server.create_database("moe_restart")
    import_and_cluster(url, tmp_path, "demo", k=5)
    create_study(StudyConfig(study=StudySection(name="c0", k=5, cluster_id=4, n_trials=2)), url)
    small = {"epochs": 1, "max_train_per_persona": 2, "evals_per_epoch": 1}
    train_persona_adapters(url, "c0", output_root=tmp_path, overrides=small, progress=False)
    storage.dispose_engines()
    own_server.stop()
    log = tmp_path / "moe.log"
    proc = _hpo(
        ["moe", "merge", "--study", "c0", "--k", "2", "--output-root", str(tmp_path)], url, log
    )
    code = _back_after(own_server, proc, down=4, timeout=300)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "unreachable" in text and "answers again" in text and PASSWORD not in text
    assert "merged " in text and (tmp_path / "results/c0/moe/moe_sparse_results.json").is_file()
    storage.dispose_engines()
