"""Two real `hpo worker` processes share one study, on the real PostgreSQL and on SQLite."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

import optuna
import pytest

import storage
from hpo.study.config import ConfigError, ParamSpec, StudyConfig, StudySection, default_search_space
from hpo.study.creation import (
    StudyConfigMismatch,
    create_study,
    load_study,
    optuna_storage,
    raise_budget,
)
from hpo.study.strategies import PrunerConfig
from hpo.workers.launch import (
    WorkerProcess,
    start_workers,
    wait_for_workers,
    worker_command,
    worker_environment,
)
from hpo.workers.objective import WORKER_ATTR
from hpo.workers.stop import finished_elsewhere, stop_cleanly, storage_id
from tests.conftest import import_and_cluster
from tests.hpo_tests.invariants import check_invariants, long_fields
from trainers.config import DataConfig, TrainConfig

N_TRIALS = 8


def small_study_config(name: str = "workers", n_trials: int = N_TRIALS) -> StudyConfig:
    """A study on cluster 2 of a 20-persona dataset, with a wide learning-rate range so that
    some trials are clearly worse than the median and get pruned."""
    space = default_search_space()
    space["learning_rate"] = ParamSpec("float", low=1e-6, high=1e-3, log=True)
    return StudyConfig(
        study=StudySection(name=name, dataset="small", k=3, cluster_id=2, n_trials=n_trials),
        pruner=PrunerConfig(n_startup_trials=2, n_warmup_steps=1),
        search_space=space,
        train=TrainConfig(
            evals_per_epoch=2, data=DataConfig(max_train_per_persona=3, max_val_per_persona=2)
        ),
    )


def long_study_config(name: str, n_trials: int) -> StudyConfig:
    """Like small_study_config, on all training examples: trials last seconds, long enough
    for a test to signal or kill a worker in the middle of one."""
    config = small_study_config(name=name, n_trials=n_trials)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, data=DataConfig()))


def wait_for_training(url: str, name: str, timeout: float = 120) -> optuna.trial.FrozenTrial:
    """Wait until a trial is mid-training (parameters set, an eval_loss reported)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        study, _ = load_study(url, name)
        for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            if t.intermediate_values:
                return t
        time.sleep(0.1)
    raise AssertionError(f"no trial of {name} started training within {timeout} s")


def start_worker(url: str, name: str, index: int, root: Path, grace: int) -> WorkerProcess:
    """One real ``hpo worker`` process with 1 thread and a grace period of ``grace`` s, its
    storage URL in its environment, its output in ``root/worker-<index>.log``."""
    log_path = root / f"worker-{index}.log"
    with log_path.open("ab") as log:
        command = worker_command(name, index, root, threads=1)
        proc = subprocess.Popen(
            [*command, "--grace-period", str(grace)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_environment(url, threads=1),
        )
    return WorkerProcess(index, proc, log_path, None)


def launch_process(
    url: str, name: str, root: Path, log: Path, *args: str, grace: int | None = None
) -> subprocess.Popen[bytes]:
    """A real ``hpo launch --study NAME ARGS`` process (its workers with ``--grace-period
    grace`` when given), its storage URL in its environment, its output in ``log``."""
    import os
    import sys

    command = [sys.executable, "-m", "hpo", "launch", "--study", name, *args]
    command += ["--output-root", str(root)]
    if grace is not None:
        command += ["--grace-period", str(grace)]
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HPO_STORAGE": url},
        )


def exit_lines(output: str) -> list[str]:
    """The lines ``hpo launch`` prints for its exited workers."""
    import re

    return [line for line in output.splitlines() if re.match(r"worker \d+ \(pid \d+, ", line)]


def prepare(url: str, tmp_path: Path, config: StudyConfig) -> None:
    """Dataset -> clusters -> study, as `hpo data import/cluster` and `hpo study create` do."""
    import_and_cluster(url, tmp_path, "small", k=3)
    create_study(config, url)


def assert_trial_adapter_loads_with_plain_peft(
    trials: list[optuna.trial.FrozenTrial], output_root: Path, url: str, name: str
) -> None:
    """The best trial's adapter (recorded under the output root) is a plain peft adapter: it
    loads and generates."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.config import ModelConfig
    from trainers.tiny import ensure_tiny_model

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(done, key=lambda t: t.value if t.value is not None else float("inf"))
    base_dir = ensure_tiny_model(ModelConfig())
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir),
        str(output_root / str(long_fields(url, name, best)["adapter_path"])),
    )
    inputs = tokenizer(
        "Persona: I love hiking.\nA: What do you do on weekends?\nB:", return_tensors="pt"
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def run_two_workers(url: str, tmp_path: Path) -> None:
    config = small_study_config()
    prepare(url, tmp_path, config)
    workers = start_workers(url, config.study.name, n_workers=2, output_root=tmp_path)
    codes = wait_for_workers(workers, interval=0.5)
    logs = "\n".join(w.log_path.read_text()[-3000:] for w in workers)
    assert codes == [0, 0], logs

    trials = check_invariants(url, config.study.name, N_TRIALS, output_root=tmp_path)
    seeds = [
        {"epochs": 5, "batch_size": 2, "learning_rate": lr, "lora_rank": r}
        for lr, r in ((5e-4, 8), (2e-4, 8), (2e-4, 16))
    ]
    params = [t.params for t in trials]
    for seed in seeds:
        assert seed in params, f"seed config {seed} did not run"
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    assert all(t.intermediate_values for t in trials)
    # both workers took part: each ran at least one of the finished trials
    ran = [t.user_attrs[WORKER_ATTR] for t in trials]
    assert sorted(set(ran)) == [0, 1], ran
    assert_trial_adapter_loads_with_plain_peft(trials, tmp_path, url, config.study.name)
    # the eval_loss lines of every trial are in its own log, as the original plan's logs were
    for t in trials:
        log = tmp_path / "logs" / f"{config.study.name}-trial-{t.number:04d}.log"
        assert "eval_loss=" in log.read_text()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    run_two_workers(pg_url, tmp_path)


@pytest.mark.slow
def test_two_workers_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    run_two_workers(sqlite_url, tmp_path)


def test_budget_is_exact_when_raised(sqlite_url: str, tmp_path: Path) -> None:
    """`hpo study budget` raises the budget, keeping the claimed tickets; a re-create with
    another n_trials is refused (the stored config is kept), and so is a lower budget."""
    config = small_study_config(n_trials=2)
    prepare(sqlite_url, tmp_path, config)
    engine = storage.open_storage(sqlite_url)
    with storage.session_scope(engine) as session:
        assert storage.claim_ticket(session, "workers")
    bigger = dataclasses.replace(config, study=dataclasses.replace(config.study, n_trials=5))
    with pytest.raises(StudyConfigMismatch, match="n_trials"):
        create_study(bigger, sqlite_url)
    raise_budget(sqlite_url, "workers", 5)
    with storage.session_scope(engine) as session:
        assert storage.budget(session, "workers") == (5, 1)
    _, stored = load_study(sqlite_url, "workers")
    assert stored.study.n_trials == 5
    create_study(bigger, sqlite_url)  # the raised config is now the stored one
    with pytest.raises(ConfigError, match=">= 5"):
        raise_budget(sqlite_url, "workers", 4)


def test_a_trial_failed_elsewhere_is_told_apart_by_its_state(sqlite_url: str) -> None:
    """What the worker does when Optuna refuses to store a trial's end, on a real storage."""
    rdb = optuna_storage(sqlite_url)
    study = optuna.create_study(study_name="seam", storage=rdb)
    study_id = rdb.get_study_id_from_name("seam")

    def failed_by_a_sweep_meanwhile(trial: optuna.Trial) -> float:
        # what another worker's sweep of stale trials does while this trial trains
        rdb.set_trial_state_values(
            storage_id(rdb, study_id, trial.number), optuna.trial.TrialState.FAIL
        )
        trial.report(1.0, 1)
        return 1.0

    with pytest.raises((optuna.exceptions.UpdateFinishedTrialError, ValueError)):
        study.optimize(failed_by_a_sweep_meanwhile, n_trials=1, catch=(Exception,))
    assert finished_elsewhere(rdb, storage_id(rdb, study_id, 0))

    study.optimize(lambda trial: 0.5, n_trials=1)
    assert not finished_elsewhere(rdb, storage_id(rdb, study_id, 1))
    assert not finished_elsewhere(rdb, None)  # no trial created yet


def test_stop_cleanly_fails_a_running_trial_and_keeps_finished_tickets(sqlite_url: str) -> None:
    """After SIGTERM: a RUNNING trial becomes FAIL and frees its ticket; a finished one keeps
    it; a stop before the trial existed frees the ticket claimed for it."""
    engine = storage.open_storage(sqlite_url)
    rdb = optuna_storage(sqlite_url)
    study = optuna.create_study(study_name="seam", storage=rdb)
    study_id = rdb.get_study_id_from_name("seam")
    with storage.session_scope(engine) as session:
        storage.set_budget(session, "seam", 5)
    for _ in range(3):
        with storage.session_scope(engine) as session:
            assert storage.claim_ticket(session, "seam")

    def claimed() -> int:
        with storage.session_scope(engine) as session:
            return (storage.budget(session, "seam") or (0, -1))[1]

    running = study.ask()
    stop_cleanly(rdb, storage_id(rdb, study_id, running.number), engine, "seam")
    assert study.get_trials()[running.number].state == optuna.trial.TrialState.FAIL
    assert claimed() == 2

    done = study.ask()
    study.tell(done, 0.3)
    stop_cleanly(rdb, storage_id(rdb, study_id, done.number), engine, "seam")
    assert study.get_trials()[done.number].state == optuna.trial.TrialState.COMPLETE
    assert claimed() == 2

    stop_cleanly(rdb, None, engine, "seam")
    assert claimed() == 1
