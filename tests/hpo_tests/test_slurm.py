"""``hpo launch --slurm`` on a real Slurm that the tests start (tests/slurm_server.py): an array
of six workers on a node of four simulated GPUs fills a study with an exact budget, each task
sees one GPU, no trial repeats another; a task cancelled (``scancel``), signalled as before
its time limit (``--signal=B:TERM@120``) or re-queued (as preemption does) mid-trial has its
trial run again elsewhere; a re-queued task comes back with a fresh worker index; the
evaluator job promotes and ends by itself. One run of the array serves every test."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import storage
from hpo.evaluation.records import promoted_trial
from hpo.study.creation import load_study
from hpo.study.queries import retried_trial_number
from hpo.workers.objective import FAIL_REASON_ATTR
from hpo.workers.place import place_of
from tests.conftest import PG_ADMIN_URL
from tests.hpo_tests.invariants import check_invariants
from tests.hpo_tests.test_workers import prepare, small_study_config
from tests.slurm_server import SlurmCluster, slurm_cluster, slurm_missing

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N_TASKS = 6
N_GPUS = 4
N_TRIALS = 10
SECRET = "s3cr3t-pw"
"""A password in the storage URL (the server trusts 127.0.0.1 and never asks for it): it must
reach no script, command line or log."""
RUN_TIMEOUT = 600.0
STOPS = {
    "requeue": ("scontrol", "requeue"),  # what preemption in REQUEUE mode does
    "scancel": ("scancel",),
    "time limit": ("scancel", "--batch", "--signal=TERM"),  # what --signal=B:TERM@120 sends
}
"""How the tests stop a task mid-trial; Slurm's own words for each."""


@dataclass
class SlurmRun:
    """What one ``hpo launch --slurm --evaluator`` did, for the tests below to check."""

    url: str
    root: Path
    printed: str
    job_id: str
    evaluator_id: str
    victims: dict[str, optuna.trial.FrozenTrial]
    """The trial running in each task that was stopped, by how: :data:`STOPS`."""
    command_lines: list[str]
    cluster: SlurmCluster


@contextlib.contextmanager
def _database() -> Iterator[str]:
    """A fresh database on the real PostgreSQL for the module; its URL carries a password."""
    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name, password=SECRET)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        storage.dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _running_trial(url: str, deadline: float, not_in: set[int]) -> optuna.trial.FrozenTrial:
    """A trial mid-training (an eval_loss reported) in a Slurm task not in ``not_in``."""
    while time.monotonic() < deadline:
        study, _ = load_study(url, "slurm")
        for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            task = place_of(t).get("slurm_task")
            if t.intermediate_values and task is not None and task not in not_in:
                return t
        time.sleep(0.2)
    raise AssertionError(f"no trial started training in a Slurm task other than {not_in}")


def _state_after(url: str, number: int, seconds: float = 60) -> optuna.trial.TrialState:
    """The trial's state once it is no longer RUNNING (or still RUNNING after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        study, _ = load_study(url, "slurm")
        state = study.get_trials(deepcopy=False)[number].state
        if state != optuna.trial.TrialState.RUNNING or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def _command_lines() -> list[str]:
    """The command lines of every process on the machine now (what ``ps`` shows anyone)."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            continue
    return lines


def _launch(cluster: SlurmCluster, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``hpo launch --study slurm --slurm ARGS`` against the cluster, the URL in the
    environment as a user exports it."""
    return subprocess.run(
        [sys.executable, "-m", "hpo", "launch", "--study", "slurm", "--slurm", *args],
        env={**cluster.env(), "HPO_STORAGE": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmRun]:
    reason = slurm_missing()
    if reason is not None:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    config = small_study_config(name="slurm", n_trials=N_TRIALS)
    space = dict(config.search_space)
    space["epochs"] = dataclasses.replace(space["epochs"], low=2, high=3)
    config = dataclasses.replace(config, search_space=space, seed_trials=())
    with _database() as url:
        prepare(url, root, config)
        storage.dispose_engines()
        with slurm_cluster(gpus=N_GPUS) as cluster:
            launched = _launch(
                cluster, url, "--workers", str(N_TASKS), "--evaluator", "--output-root", str(root)
            )
            assert launched.returncode == 0, launched.stderr + cluster.log()
            job_id, evaluator_id = re.findall(r"as Slurm job (\d+)", launched.stdout)
            deadline = time.monotonic() + RUN_TIMEOUT
            victims: dict[str, optuna.trial.FrozenTrial] = {}
            seen: list[str] = []
            for how, command in STOPS.items():
                while how not in victims:  # a trial that ended first is passed over
                    tasks = {place_of(t)["slurm_task"] for t in victims.values()}
                    victim = _running_trial(url, deadline, not_in=tasks)
                    seen = seen or _command_lines()
                    task = f"{job_id}_{place_of(victim)['slurm_task']}"
                    # under load the client may time out on a stop the controller made
                    cluster.run(*command, task, check=False)
                    if _state_after(url, victim.number) == optuna.trial.TrialState.FAIL:
                        victims[how] = victim
            while cluster.run("squeue", "-h").stdout.strip():
                assert time.monotonic() < deadline, cluster.run("squeue").stdout
                time.sleep(1)
            yield SlurmRun(url, root, launched.stdout, job_id, evaluator_id, victims, seen, cluster)


def _logs(run: SlurmRun) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
        for p in sorted((run.root / "logs" / "slurm").glob("*.log"))
    )


def test_an_array_of_six_on_four_gpus_fills_the_study_one_gpu_each(run: SlurmRun) -> None:
    assert f"submitted {N_TASKS} workers as Slurm job {run.job_id}" in run.printed
    assert f"squeue -j {run.job_id},{run.evaluator_id}" in run.printed
    trials = check_invariants(run.url, "slurm", N_TRIALS, output_root=run.root)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == len(params), "a finished trial repeats another's parameters"
    tasks = set()
    for t in trials:
        place = place_of(t)
        assert place["slurm_job"] == run.job_id, place
        assert place["visible"] in {str(g) for g in range(N_GPUS)}, place  # one GPU, no more
        assert place["device"] == "cpu"  # the simulated GPUs are not CUDA devices
        tasks.add(place["slurm_task"])
        # every task logs where Slurm said it would
        log = run.root / "logs" / "slurm" / f"slurm-{run.job_id}_{place['slurm_task']}.log"
        assert log.is_file(), _logs(run)
    assert tasks <= set(range(N_TASKS)) and len(tasks) >= 2, tasks
    with storage.session_scope(storage.open_storage(run.url)) as session:
        started = storage.claim_worker_indexes(session, "slurm").start
    assert started == N_TASKS + 1  # each task claimed its own, the re-queued one a second
    assert {place_of(t)["worker"] for t in trials} <= set(range(started))


def _retry_of(trial: optuna.trial.FrozenTrial) -> int | None:
    """The trial that ``trial`` is the direct retry of, or None."""
    history = trial.system_attrs.get("retry_history") or [None]
    return history[-1]


@pytest.mark.parametrize("how", list(STOPS))
def test_a_stopped_task_has_its_trial_run_again_elsewhere(run: SlurmRun, how: str) -> None:
    study, _ = load_study(run.url, "slurm")
    trials = {t.number: t for t in study.get_trials()}
    stopped = trials[run.victims[how].number]
    assert stopped.state == optuna.trial.TrialState.FAIL, _logs(run)
    assert "WorkerStopped" in stopped.user_attrs[FAIL_REASON_ATTR]
    # its retry, or the retry of that retry where another stop hit the retry too (Optuna's
    # retried_trial_number names the first trial of a chain, so the chain is followed by
    # each copy's last retried trial, the end of its retry_history)
    assert retried_trial_number(stopped) in (None, *stopped.system_attrs.get("retry_history", []))
    last = stopped
    while again := [t for t in trials.values() if _retry_of(t) == last.number]:
        assert len(again) == 1 and again[0].params == stopped.params
        last = again[0]
    assert last.state.name in ("COMPLETE", "PRUNED"), last
    assert place_of(last)["pid"] != place_of(stopped)["pid"]  # another process ran it


def test_a_requeued_task_comes_back_with_a_fresh_index(run: SlurmRun) -> None:
    task = place_of(run.victims["requeue"])["slurm_task"]
    log = run.root / "logs" / "slurm" / f"slurm-{run.job_id}_{task}.log"
    starts = re.findall(r"^worker (\d+): \d+ trials", log.read_text(), flags=re.MULTILINE)
    # two starts, each with an index of its own from the database (the first one stopped)
    assert len(starts) == 2 and starts[0] != starts[1], log.read_text()[-3000:]


def test_the_evaluator_job_promotes_and_ends(run: SlurmRun) -> None:
    study, _ = load_study(run.url, "slurm")
    best = promoted_trial(study)
    assert best is not None, _logs(run)
    results = run.root / "results" / "slurm" / "cluster_lora" / "cluster_lora_results.json"
    assert results.is_file()
    log = run.root / "logs" / "slurm" / f"slurm-evaluator-{run.evaluator_id}.log"
    assert f"results: {results}" in log.read_text(), _logs(run)  # it ended by itself


def test_no_password_in_the_script_a_command_line_or_a_log(run: SlurmRun) -> None:
    scripts = sorted((run.root / "logs" / "slurm").glob("*.sbatch"))
    assert [p.name for p in scripts] == ["slurm-evaluator.sbatch", "slurm-workers.sbatch"]
    workers = scripts[1].read_text()
    assert "exec " in workers and "--signal=B:TERM@120" in workers and "--requeue" in workers
    hpo_lines = [line for line in run.command_lines if " -m hpo " in line]
    assert any(" worker --study slurm" in line for line in hpo_lines), hpo_lines
    for text in [*(p.read_text() for p in scripts), *hpo_lines, _logs(run)]:
        assert SECRET not in text


def test_a_job_sbatch_refuses_is_one_line_naming_its_reason(run: SlurmRun) -> None:
    root = run.root / "refused"
    refused = _launch(
        run.cluster, run.url, "--workers", "2", "--partition", "nosuch", "--output-root", str(root)
    )
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("hpo: error: sbatch refused ") and "nosuch" in line, line
    assert SECRET not in refused.stderr
    assert not run.cluster.run("squeue", "-h").stdout.strip()  # nothing submitted
    assert list(root.rglob("*.sbatch")) == []  # nor a script kept for a job that never was
