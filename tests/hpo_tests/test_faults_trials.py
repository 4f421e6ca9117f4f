"""Faults inside a trial, in a real worker run in this process on SQLite with real training:
a full disk while the adapter is saved (re-queued, nothing half-written kept or recorded),
running out of memory (failed, not re-queued, memory freed, the worker goes on), and temp
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
from tests.hpo_tests.invariants import check_invariants, leftover_temp_dirs
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
    assert "No space left on device" in failed.user_attrs["fail_reason"]
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
def test_out_of_memory_fails_the_trial_frees_memory_and_the_worker_goes_on(
    sqlite_url: str, tmp_path: Path
) -> None:
    """In a process of its own: pytest keeps log records, whose tracebacks hold memory."""
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
    assert "trials 4 failed 1" in result.stdout, result.stdout
    assert "memory freed" in result.stdout, result.stdout

    trials = check_invariants(sqlite_url, "oom", 3, output_root=tmp_path)
    [failed] = [t for t in trials if t.state == FAIL]
    assert "out of memory" in failed.user_attrs["fail_reason"]
    # the parameters are at fault: not re-queued; the next trials ran
    assert [retried_trial_number(t) for t in trials] == [None] * len(trials)


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
