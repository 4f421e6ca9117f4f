"""Workers started by hand without ``--worker-index`` take distinct indexes from the database,
so their samplers never share a seed and no trial repeats another; each trial records where
it ran."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
from pathlib import Path

import optuna
import pytest

import storage
from hpo.workers.launch import WorkerProcess, wait_for_workers, worker_command, worker_environment
from hpo.workers.objective import WORKER_ATTR
from hpo.workers.place import UNSET, WorkerPlace, place_of
from tests.hpo_tests.invariants import check_invariants
from tests.hpo_tests.test_workers import prepare, small_study_config

N_WORKERS = 3
N_TRIALS = 6


def start_unindexed_worker(url: str, name: str, slot: int, root: Path) -> WorkerProcess:
    """``hpo worker --study NAME`` as a user types it: no ``--worker-index``."""
    command = worker_command(name, 0, root, threads=1)
    at = command.index("--worker-index")
    del command[at : at + 2]
    log_path = root / f"hand-{slot}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=worker_environment(url, threads=1)
        )
    return WorkerProcess(slot, proc, log_path, None)


@pytest.mark.slow
@pytest.mark.postgres
def test_hand_started_workers_never_repeat_each_other(pg_url: str, tmp_path: Path) -> None:
    """Three workers started at once with no index and no seed configs: every trial's
    parameters differ (all three with index 0 repeated the first random points)."""
    config = small_study_config(name="hand", n_trials=N_TRIALS)
    space = dict(config.search_space)
    space["epochs"] = dataclasses.replace(space["epochs"], high=2)  # short trials
    config = dataclasses.replace(config, search_space=space, seed_trials=())
    prepare(pg_url, tmp_path, config)
    storage.dispose_engines()
    workers = [start_unindexed_worker(pg_url, "hand", i, tmp_path) for i in range(N_WORKERS)]
    codes = wait_for_workers(workers, interval=0.5)
    assert codes == [0] * N_WORKERS, "\n".join(w.log_path.read_text()[-3000:] for w in workers)

    trials = check_invariants(pg_url, "hand", N_TRIALS, output_root=tmp_path)
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params), params
    # each process claimed its own index: 0, 1 and 2, in whatever order they started
    with storage.session_scope(storage.open_storage(pg_url)) as session:
        assert storage.claim_worker_indexes(session, "hand") == range(N_WORKERS, N_WORKERS + 1)
    ran = {t.user_attrs[WORKER_ATTR] for t in trials}
    assert ran <= set(range(N_WORKERS)) and len(ran) >= 2, ran
    for t in trials:
        place = place_of(t)
        assert place["worker"] == t.user_attrs[WORKER_ATTR]
        assert place["host"] == socket.gethostname()
        assert place["pid"] in {w.process.pid for w in workers}
        assert place["device"] == "cpu" and place["visible"] == ""  # launch's env: no GPU
        assert "slurm_job" not in place and "slurm_task" not in place
        # short scalars: they keep a trial's row readable
        assert all(isinstance(v, int | str) and len(str(v)) < 40 for v in place.values())


def test_a_place_reads_slurm_and_kubernetes_from_the_environment() -> None:
    env = {
        "CUDA_VISIBLE_DEVICES": "2",
        "SLURM_JOB_ID": "48",
        "SLURM_ARRAY_JOB_ID": "41",
        "SLURM_ARRAY_TASK_ID": "7",
    }
    place = WorkerPlace.here(12, "cuda:0", env)
    assert place.system_attrs() == {
        "hpo:host": socket.gethostname(),
        "hpo:pid": place.pid,
        "hpo:worker": 12,
        "hpo:visible": "2",
        "hpo:device": "cuda:0",
        "hpo:slurm_job": "41",  # the array's id, as squeue and scancel name the task: 41_7
        "hpo:slurm_task": 7,
    }
    assert "slurm job 41_7" in place.describe()
    alone = WorkerPlace.here(0, "cpu", {"SLURM_JOB_ID": "48", "JOB_COMPLETION_INDEX": "3"})
    assert alone.slurm_job == "48" and alone.slurm_task is None and alone.k8s_index == 3
    assert alone.visible == UNSET


def test_a_requeued_copy_starts_without_the_place(sqlite_url: str) -> None:
    from hpo.study.creation import optuna_storage
    from hpo.workers.place import place_recorder
    from hpo.workers.stop import requeue

    rdb = optuna_storage(sqlite_url)
    study = optuna.create_study(study_name="place", storage=rdb)
    record = place_recorder(
        rdb, rdb.get_study_id_from_name("place"), WorkerPlace.here(3, "cpu", {})
    )
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    record(trial)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    failed = study.get_trials()[0]
    assert place_of(failed)["worker"] == 3
    requeue(study, failed, transient=True)
    copy = study.get_trials()[1]
    assert copy.state == optuna.trial.TrialState.WAITING and place_of(copy) == {}
    assert copy.params == failed.params
