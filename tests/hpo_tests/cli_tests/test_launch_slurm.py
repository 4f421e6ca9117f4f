"""``hpo launch --slurm``: the sbatch scripts it writes (``--dry-run``, no Slurm needed) and what
it refuses; ``hpo evaluator --until-done``'s test of a finished study. The scripts on a real
Slurm: tests/hpo_tests/test_slurm.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest

import storage
from hpo.cli import EXIT_BAD_INPUT
from hpo.evaluation.service import study_finished
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line

URL = "postgresql+psycopg://hpo:pa55word@db.invalid/hpo"
"""A server that does not exist: --dry-run must not touch the database."""


def _scripts(stdout: str) -> list[str]:
    return ["#!/bin/bash" + part for part in stdout.split("#!/bin/bash")[1:]]


def test_dry_run_prints_an_array_of_workers_and_the_evaluator(hpo: Hpo, tmp_path: Path) -> None:
    result = hpo(
        *("launch", "--study", "cluster4", "--slurm", "--workers", "6", "--dry-run"),
        *("--partition", "gpu", "--time", "1-12:00:00", "--account", "lab", "--mem", "16G"),
        *("--cpus-per-task", "4", "--sbatch-arg=--qos=high", "--evaluator"),
        *("--storage", URL, "--output-root", tmp_path / "runs"),
    )
    assert result.exit_code == 0, result.stderr
    workers, evaluator = _scripts(result.stdout)
    lines = workers.strip().splitlines()
    for directive in (
        "--array=0-5",
        "--gres=gpu:1",
        "--cpus-per-task=4",
        "--partition=gpu",
        "--time=1-12:00:00",
        "--account=lab",
        "--mem=16G",
        f"--output={tmp_path}/runs/logs/slurm/cluster4-%A_%a.log",
        "--signal=B:TERM@120",  # SIGTERM two minutes before the time limit, to the worker
        "--requeue",
        "--qos=high",
    ):
        assert f"#SBATCH {directive}" in lines, directive
    # the worker replaces the shell (exec), so Slurm's signals reach it; no index: the
    # database gives each task its own; its threads are the task's cores
    run = lines[-1]
    assert run.startswith("exec ") and " -m hpo worker --study cluster4 " in run
    assert "--worker-index" not in run and '--threads "${SLURM_CPUS_PER_TASK:-1}"' in run
    last = evaluator.strip().splitlines()[-1]
    assert last.endswith(
        f"evaluator --study cluster4 --watch --until-done --output-root {tmp_path}/runs"
    )
    assert "#SBATCH --array" not in evaluator
    assert "pa55word" not in result.stdout and "db.invalid" not in result.stdout
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_the_script_stops_with_one_line_without_hpo_storage(hpo: Hpo, tmp_path: Path) -> None:
    """Run by bash as Slurm would, with HPO_STORAGE not passed: exit 2 before any worker."""
    result = hpo("launch", "--study", "s", "--slurm", "--workers", "2", "--dry-run")
    script = tmp_path / "workers.sbatch"
    script.write_text(_scripts(result.stdout)[0])
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0  # valid bash
    ran = subprocess.run(
        ["bash", str(script)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert ran.returncode == 2
    assert ran.stderr.startswith("hpo: error: HPO_STORAGE is not set in the job's environment")


def test_a_cpu_partition_gets_no_gpu(hpo: Hpo) -> None:
    result = hpo(
        *("launch", "--study", "s", "--slurm", "--workers", "3", "--dry-run"),
        *("--gpus-per-worker", "0", "--cpus-per-task", "8"),
    )
    workers = _scripts(result.stdout)[0]
    assert "--gres" not in workers and "#SBATCH --cpus-per-task=8" in workers
    assert "\nexport CUDA_VISIBLE_DEVICES=\n" in workers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--slurm",), "--slurm takes --workers N"),
        (("--slurm", "--gpus", "0,1"), "--slurm takes --workers N"),
        (("--slurm", "--workers", "2", "--threads", "2"), "give --cpus-per-task"),
        (("--workers", "2", "--partition", "gpu"), "--partition needs --slurm"),
        (("--workers", "2", "--sbatch-arg=--qos=x"), "--sbatch-arg needs --slurm"),
        (("--slurm", "--workers", "2", "--time", "4 hours"), "--time='4 hours'"),
        (("--slurm", "--workers", "2", "--mem", "lots"), "--mem='lots'"),
        (("--slurm", "--workers", "2", "--partition", "a b"), "--partition='a b'"),
        (("--slurm", "--workers", "2", "--sbatch-arg=--output=x.log"), "--sbatch-arg"),
        (("--slurm", "--workers", "2", "--sbatch-arg=-o x.log"), "--sbatch-arg"),
        (("--slurm", "--workers", "2", "--sbatch-arg=--output x.log"), "--sbatch-arg"),
        (("--slurm", "--workers", "2", "--sbatch-arg=--export NONE"), "HPO_STORAGE"),
        (("--slurm", "--workers", "2", "--sbatch-arg=--export=NONE"), "HPO_STORAGE"),
        (("--slurm", "--workers", "2", "--sbatch-arg=qos"), "one sbatch option"),
        (("--slurm", "--workers", "2", "--gpus-per-worker", "2"), "--gpus-per-worker"),
        (("--slurm", "--workers", "2", "--output-root", "my runs"), "without spaces"),
    ],
)
def test_bad_slurm_options_are_one_line_and_exit_2(
    hpo: Hpo, args: tuple[str, ...], message: str
) -> None:
    result = hpo("launch", "--study", "s", *args, "--dry-run")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert message in one_line(result)


def test_an_unknown_study_is_refused_before_anything_is_submitted(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    result = hpo("launch", "--study", "nosuch", "--slurm", "--workers", "2", "--storage", url)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no study named 'nosuch'" in one_line(result)
    assert not (tmp_path / "logs").exists()  # no script written


def test_a_study_is_finished_when_its_budget_is_spent_and_nothing_runs_or_waits(
    sqlite_url: str,
) -> None:
    """What ``hpo evaluator --until-done`` waits for before its last pass."""
    from hpo.study.creation import optuna_storage

    engine = storage.open_storage(sqlite_url)
    study = optuna.create_study(study_name="s", storage=optuna_storage(sqlite_url))
    with storage.session_scope(engine) as session:
        storage.set_budget(session, "s", 1)
    assert not study_finished(engine, study)  # a ticket is left
    with storage.session_scope(engine) as session:
        assert storage.claim_ticket(session, "s")
    running = study.ask()
    assert not study_finished(engine, study)  # the trial may still complete
    study.tell(running, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({"x": 1.0})
    assert not study_finished(engine, study)  # a re-queued trial waits
    study.tell(study.ask(), 0.5)
    assert study_finished(engine, study)


def test_the_script_in_the_docs_is_the_one_written() -> None:
    """docs/clusters.md shows the script of its example command, as written (its paths
    aside)."""
    import re
    import sys

    from hpo.workers.slurm import SlurmJob, worker_script

    docs = (Path(__file__).resolve().parents[3] / "docs" / "clusters.md").read_text()
    shown = re.search(r"```bash\n(#!/bin/bash\n.*?)```", docs, flags=re.DOTALL)
    assert shown is not None
    job = SlurmJob(workers=8, cpus_per_task=4, partition="gpu", time="4:00:00", mem="32G")
    checkout = Path("/shared/home/me/persona-hpo")
    written = worker_script(job, "cluster4", Path("/shared/runs"), workdir=checkout)
    assert shown.group(1) == written.replace(sys.executable, f"{checkout}/.venv/bin/python")
