"""Out of memory in a real worker trial, on the real PostgreSQL: caused for real on the CPU.

A child process runs ``run_worker`` on two studies of batch 32 under an address-space limit set
once the base model is loaded (:mod:`tests.memory_limit`): with room for a few rows the trial
recovers at a smaller micro-batch with the same effective batch; with room for no row at all
every trial is pruned, and the worker goes on to the end of the budget.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import optuna
import pytest

from hpo.study.config import ParamSpec, StudyConfig, StudySection
from hpo.study.creation import create_study, load_study
from hpo.workers.objective import OUT_OF_MEMORY, PRUNE_REASON_ATTR
from tests.conftest import PG_ADMIN_URL, import_and_cluster
from tests.hpo_tests.invariants import check_invariants, long_fields
from tests.memory_limit import run_child
from trainers.config import DataConfig, TrainConfig

BATCH = 32
ROOMY_MIB = 60
"""Headroom in which batch 32 of the demo's rows does not fit but a few rows do (on the
machine this was written on: micro-batch 8 fits at 60 MiB, 16 at 120, 32 at 240, none at 20)."""
TIGHT_MIB = 12
"""Headroom in which not even one row trains (fits nothing up to 20 MiB; at 2 MiB Optuna's own
bookkeeping runs out too)."""
SEEDS = tuple({"batch_size": BATCH, "learning_rate": lr} for lr in (1e-3, 2e-3, 3e-3))


def oom_config(name: str, n_trials: int) -> StudyConfig:
    """Batch 32 only; the first ``n_trials`` seed configs, one epoch each."""
    return StudyConfig(
        study=StudySection(name=name, dataset="small", k=3, cluster_id=2, n_trials=n_trials),
        search_space={
            "batch_size": ParamSpec("categorical", choices=(BATCH,)),
            "learning_rate": ParamSpec("float", low=1e-4, high=1e-2, log=True),
        },
        seed_trials=SEEDS[:n_trials],
        train=TrainConfig(epochs=1, evals_per_epoch=2, data=DataConfig(max_val_per_persona=2)),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One child process: the worker on study ``roomy`` (one trial), then on ``tight`` (three),
    on a PostgreSQL database of this module's own."""
    import sqlalchemy as sa

    tmp = tmp_path_factory.mktemp("oom")
    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        import_and_cluster(url, tmp, "small", k=3)
        create_study(oom_config("roomy", 1), url)
        create_study(oom_config("tight", 3), url)
        result = run_child(
            "worker",
            {
                "url": url,
                "output_root": str(tmp),
                "runs": [
                    {"study": "roomy", "headroom_mib": ROOMY_MIB},
                    {"study": "tight", "headroom_mib": TIGHT_MIB},
                ],
            },
        )
        yield {"url": url, "root": tmp, **result}
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_trial_out_of_memory_completes_at_a_smaller_micro_batch(runs: dict[str, Any]) -> None:
    url, root = runs["url"], runs["root"]
    study, _ = load_study(url, "roomy")
    [trial] = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs
    attrs = long_fields(url, "roomy", trial)  # the trial's record (hpo.study.trial_records)
    assert attrs["oom_retries"] >= 1, runs["log"][-3000:]
    assert attrs["micro_batch_size"] < BATCH
    assert attrs["micro_batch_size"] * attrs["gradient_accumulation_steps"] == BATCH
    assert trial.params["batch_size"] == BATCH  # the effective batch is the trial's
    assert sorted(trial.intermediate_values) == [1, 2]
    assert "out of memory at micro-batch 32" in runs["log"]
    log = (root / "logs" / "roomy-trial-0000.log").read_text()
    assert f"micro_batch_size={attrs['micro_batch_size']} " in log
    check_invariants(url, "roomy", 1, output_root=root)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_trial_that_fits_no_row_is_pruned_and_the_worker_goes_on(runs: dict[str, Any]) -> None:
    url, root = runs["url"], runs["root"]
    study, _ = load_study(url, "tight")
    trials = study.trials
    states = [t.state for t in trials]
    assert states == [optuna.trial.TrialState.PRUNED] * 3, [t.user_attrs for t in trials]
    for trial in trials:
        assert trial.user_attrs[PRUNE_REASON_ATTR] == OUT_OF_MEMORY
        assert long_fields(url, "tight", trial)["oom_retries"] == 5  # 32, 16, 8, 4, 2, then 1
    # every seed config ran, none lost; three in a row did not stop the worker
    assert [t.params for t in trials] == list(SEEDS)
    [_, tight] = runs["runs"]
    assert [state for _, state in tight["trials"]] == ["PRUNED"] * 3
    assert "failed in a row" not in runs["log"]
    check_invariants(url, "tight", 3, output_root=root)
