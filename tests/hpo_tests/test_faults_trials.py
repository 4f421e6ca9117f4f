"""Faults inside a trial, in a real worker run in this process on SQLite with real training:
a full disk while the adapter is saved (re-queued, nothing half-written kept or recorded),
running out of memory (the run again at a smaller micro-batch, what the failed attempt held
freed), and temp
folders left by killed workers (removed at start)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import optuna
import pytest

import storage
from hpo.study.queries import all_trials, retried_trial_number
from hpo.workers.worker import run_worker
from tests.hpo_tests.invariants import check_invariants, leftover_temp_dirs, long_fields
from tests.hpo_tests.test_workers import prepare, small_study_config

FAIL = optuna.trial.TrialState.FAIL


def _fail_first_save(monkeypatch: pytest.MonkeyPatch, make_error: Any) -> dict[str, Any]:
    """Make the first adapter save write part of the adapter, then raise ``make_error()``."""
    import trainers.recipe

    real_save = trainers.recipe.save_adapter
    seen: dict[str, Any] = {"calls": 0}

    def save_adapter(model: Any, config: Any, save_dir: Path) -> None:
        seen["calls"] += 1
        if seen["calls"] > 1:
            return real_save(model, config, save_dir)
        (Path(save_dir) / "adapter_model.safetensors").write_bytes(b"half an adapter")
        raise make_error(seen)

    monkeypatch.setattr(trainers.recipe, "save_adapter", save_adapter)
    return seen


@pytest.mark.slow
def test_disk_full_while_saving_fails_the_trial_and_requeues_it(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as many trials as seed configs: the retry, queued after them, must run too
    config = small_study_config(name="full", n_trials=3)
    prepare(sqlite_url, tmp_path, config)
    # a temp folder a killed worker left (trial 99 runs nowhere): removed at start
    left = storage.OutputLayout(tmp_path).trial_adapter_dir("full", 99)
    leftover = left.parent / ".tmp-99-k1ll3d"
    leftover.mkdir(parents=True)
    (leftover / "adapter_model.safetensors").write_bytes(b"partial")
    _fail_first_save(
        monkeypatch, lambda _: OSError(errno.ENOSPC, "No space left on device", "adapter")
    )

    summary = run_worker(sqlite_url, "full", output_root=tmp_path, threads=1, poll_seconds=0.1)

    trials = check_invariants(sqlite_url, "full", 3, output_root=tmp_path)
    assert not leftover.exists()
    [failed] = [t for t in trials if t.state == FAIL]
    assert "No space left on device" in str(long_fields(sqlite_url, "full", failed)["fail_reason"])
    assert not storage.OutputLayout(tmp_path).trial_adapter_dir("full", failed.number).exists()
    [retry] = [t for t in trials if retried_trial_number(t) == failed.number]
    assert retry.params == failed.params and retry.state != FAIL
    assert retry.user_attrs.get("seed_config") == failed.user_attrs.get("seed_config")
    assert summary.count("FAIL") == 1 and len(summary.trials) == 4
    # `hpo study trials` says which trial retries which
    notes = {row.number: row.note for row in all_trials(sqlite_url, "full")}
    assert notes[retry.number] == f"retry of trial {failed.number}"
    assert "No space left on device" in notes[failed.number]


_OUT_OF_MEMORY_RUN = """
import gc, sys, weakref
from pathlib import Path
import torch
import trainers.recipe
from hpo.workers.worker import run_worker

url, root = sys.argv[1], Path(sys.argv[2])
real_save, seen = trainers.recipe.save_adapter, {"calls": 0}

def save_adapter(model, config, save_dir):
    seen["calls"] += 1
    if seen["calls"] > 1:
        return real_save(model, config, save_dir)
    held = torch.empty(1 << 20)  # what the failed step held, referenced by its frames
    seen["held"] = weakref.ref(held)
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    error.held = held
    raise error

trainers.recipe.save_adapter = save_adapter
summary = run_worker(url, "oom", output_root=root, threads=1, poll_seconds=0.1)
gc.collect()
print("trials", len(summary.trials), "failed", summary.count("FAIL"))
print("memory", "freed" if seen["held"]() is None else "still referenced")
"""


@pytest.mark.slow
def test_out_of_memory_frees_what_the_failed_attempt_held_and_the_trial_completes(
    sqlite_url: str, tmp_path: Path
) -> None:
    """In a process of its own: pytest keeps log records, whose tracebacks hold memory. (A
    real out-of-memory, caused by an address-space limit: ``test_out_of_memory.py``.)"""
    import subprocess
    import sys

    config = small_study_config(name="oom", n_trials=3)
    prepare(sqlite_url, tmp_path, config)
    result = subprocess.run(
        [sys.executable, "-c", _OUT_OF_MEMORY_RUN, sqlite_url, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trials 3 failed 0" in result.stdout, result.stdout
    assert "memory freed" in result.stdout, result.stdout

    trials = check_invariants(sqlite_url, "oom", 3, output_root=tmp_path)
    # batch 2 ran out of memory once, then ran at 1: the trial's record says how
    first = long_fields(sqlite_url, "oom", trials[0])
    assert (first["oom_retries"], first["micro_batch_size"]) == (1, 1)
    assert first["gradient_accumulation_steps"] == 2
    assert all(long_fields(sqlite_url, "oom", t)["oom_retries"] == 0 for t in trials[1:])


def test_temp_folders_are_swept_only_for_trials_that_no_longer_run(tmp_path: Path) -> None:
    for name in (".tmp-3-abc", ".tmp-4-def", ".old-5-ghi", ".tmp-x-y-z", "3", ".hidden"):
        (tmp_path / name).mkdir()
    removed = storage.sweep_temp_dirs(tmp_path, lambda: {"4"})
    assert sorted(p.name for p in removed) == [".old-5-ghi", ".tmp-3-abc", ".tmp-x-y-z"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", ".tmp-4-def", "3"]
    assert storage.sweep_temp_dirs(tmp_path / "missing", lambda: set()) == []


def test_leftover_dirs_helper_sees_what_a_kill_leaves(tmp_path: Path) -> None:
    final = storage.OutputLayout(tmp_path).trial_adapter_dir("s", 2)
    with pytest.raises(KeyboardInterrupt), storage.atomic_directory(final) as tmp:
        (tmp / "a").write_text("x")
        raise KeyboardInterrupt  # the context cleans up; a SIGKILL would not
    assert leftover_temp_dirs(tmp_path, "s") == []


def test_which_failures_are_outside_the_parameters() -> None:
    import sqlalchemy as sa
    import torch

    from hpo.workers.objective import fault_outside_params
    from hpo.workers.worker import WorkerStopped
    from trainers.report import NonFiniteLossError

    lost = storage.StorageError("database error")
    lost.__cause__ = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
    outside = [
        WorkerStopped("worker got signal 15"),
        OSError(errno.ENOSPC, "No space left on device"),
        PermissionError("read-only"),
        lost,
        storage.DatabaseUnavailable("database unreachable"),
    ]
    at_fault = [
        NonFiniteLossError("loss is not finite: eval_loss nan at evaluation 1"),
        torch.OutOfMemoryError("CUDA out of memory"),
        ValueError("bad"),
    ]
    assert [fault_outside_params(e) for e in outside] == [True] * len(outside)
    assert [fault_outside_params(e) for e in at_fault] == [False] * len(at_fault)


_FULL_DISK_WORKER = """
import errno, sys
from pathlib import Path
import trainers.recipe
from hpo.cli import main

def save_adapter(model, config, save_dir):
    (Path(save_dir) / "adapter_model.safetensors").write_bytes(b"half an adapter")
    raise OSError(errno.ENOSPC, "No space left on device", str(save_dir))

trainers.recipe.save_adapter = save_adapter
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.postgres
@pytest.mark.slow
def test_seed_configs_survive_any_number_of_full_disk_episodes(pg_url: str, tmp_path: Path) -> None:
    """Each episode is an `hpo worker` process whose every adapter save meets a full disk:
    its three trials fail in a row and it exits 1. Two episodes, then a good worker: every
    seed config still runs to the end, and no episode spent one of its retries (so any
    number of episodes would leave them all: test_only_a_dead_worker_spends_a_retry)."""
    import subprocess
    import sys

    from hpo.study.creation import SEED_ATTR
    from hpo.workers.stop import RETRIES_SPENT_ATTR

    config = small_study_config(name="episodes", n_trials=3)
    prepare(pg_url, tmp_path, config)
    args = ["worker", "--study", "episodes", "--threads", "1", "--grace-period", "30"]
    args += ["--storage", pg_url, "--output-root", str(tmp_path)]
    repo = Path(__file__).resolve().parents[2]

    def worker(*head: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *head, *args], cwd=repo, capture_output=True, text=True, timeout=600
        )

    for _ in range(2):
        episode = worker("-c", _FULL_DISK_WORKER)
        assert episode.returncode == 1, episode.stderr[-3000:]
        assert "No space left on device" in episode.stderr
    good = worker("-m", "hpo")
    assert good.returncode == 0, good.stderr[-3000:]

    trials = check_invariants(pg_url, "episodes", 3, output_root=tmp_path)
    seeds = {str(t.params) for t in trials if t.user_attrs.get(SEED_ATTR)}
    assert len(seeds) == 3
    done = [t for t in trials if t.state != FAIL]  # COMPLETE, or PRUNED by the pruner
    assert sorted(str(t.params) for t in done) == sorted(seeds), "a seed config was lost"
    assert all(t.user_attrs.get(SEED_ATTR) for t in done)
    assert sum(t.state == FAIL for t in trials) == 6
    assert all(t.system_attrs.get(RETRIES_SPENT_ATTR, 0) == 0 for t in trials)


def test_only_a_dead_worker_spends_a_retry() -> None:
    """Transient failures re-queue for free; a stale trial (its worker died, cause unknown)
    spends one of MAX_RETRY retries, and the configuration stops there."""
    from hpo.workers.stop import MAX_RETRY, RETRIES_SPENT_ATTR, requeue

    study = optuna.create_study()
    study.enqueue_trial({"x": 1.0}, user_attrs={"seed_config": True})

    def fail_next(*, transient: bool) -> int:
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 2)})
        study.tell(trial, state=FAIL)
        before = len(study.trials)
        requeue(study, study.trials[trial.number], transient=transient)
        return len(study.trials) - before

    assert [fail_next(transient=True) for _ in range(10)] == [1] * 10
    assert [fail_next(transient=False) for _ in range(MAX_RETRY + 1)] == [1] * MAX_RETRY + [0]
    last = study.trials[-1]
    assert last.system_attrs[RETRIES_SPENT_ATTR] == MAX_RETRY
    assert last.params == {"x": 1.0} and last.user_attrs == {"seed_config": True}
