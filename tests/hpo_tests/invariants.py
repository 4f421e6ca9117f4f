"""The invariants every fault test ends with (shared/reliability.md).

No RUNNING or WAITING trial left, the trials asked for finished, trial numbers distinct,
each COMPLETE trial has exactly one adapter whose sha256 matches (and no other trial has
one), nothing written outside the output root, no temp folder left, and the database's
connections within budget.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from pathlib import Path

import optuna

import storage
from hpo.study.creation import load_study
from hpo.study.trial_records import records_of, trial_fields
from hpo.workers.objective import ADAPTER_KIND

MAX_CONNECTIONS = 10
"""Connections to the study's PostgreSQL database once the workers are gone: the test's own
pools (ours and Optuna's), never one per retry or a pool per trial."""
OUTPUT_FOLDERS = ("models", "logs", "results")
"""What a worker writes under its output root; none may appear in the working directory."""
_CWD_BEFORE = frozenset(os.listdir(Path.cwd()))
"""The working directory as it was when the tests were collected."""


def count_connections(url: str) -> int:
    """Open connections to the PostgreSQL database of ``url`` (0 for SQLite)."""
    import sqlalchemy as sa

    if not storage.normalize_url(url).startswith("postgresql"):
        return 0
    engine = sa.create_engine(storage.normalize_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            return int(conn.execute(sa.text(query)).scalar_one()) - 1  # less this one
    finally:
        engine.dispose()


def leftover_temp_dirs(output_root: Path, name: str) -> list[Path]:
    """Temp folders of :func:`storage.atomic_directory` left under the study's trial folder."""
    trials_dir = storage.OutputLayout(output_root).trial_adapter_dir(name, 0).parent
    if not trials_dir.exists():
        return []
    return sorted(p for p in trials_dir.iterdir() if p.name.startswith((".tmp-", ".old-")))


def check_invariants(
    url: str,
    name: str,
    n_trials: int,
    *,
    output_root: Path | None = None,
    max_connections: int = MAX_CONNECTIONS,
) -> list[optuna.trial.FrozenTrial]:
    """Check the promises of reliability.md on a study whose workers have all exited.

    Args:
        url: The storage URL.
        name: The study.
        n_trials: The trials asked for (COMPLETE + PRUNED).
        output_root: The workers' output root; None skips the checks of files.
        max_connections: Connections to the database allowed (PostgreSQL).

    Returns:
        The study's trials.
    """
    from peft.utils import CONFIG_NAME

    study, _ = load_study(url, name)
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    finished = [
        t
        for t in trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert len(finished) == n_trials, [s.name for s in states]
    assert optuna.trial.TrialState.RUNNING not in states
    assert optuna.trial.TrialState.WAITING not in states
    assert len({t.number for t in trials}) == len(trials)
    engine = storage.open_storage(url)
    records = records_of(engine, name)
    with storage.session_scope(engine) as session:
        claimed = storage.budget(session, name)
        for t in trials:
            artifact = storage.get_artifact(
                session, kind=ADAPTER_KIND, study_name=name, trial_number=t.number
            )
            if t.state == optuna.trial.TrialState.COMPLETE:
                assert artifact is not None, f"trial {t.number} has no adapter"
                # the database names no machine-local path: a place under the output root
                assert not artifact.path.is_absolute(), artifact.path
                fields = trial_fields(t.user_attrs, records.get(t.number))
                assert fields["adapter_path"] == artifact.path.as_posix()
                assert fields["adapter_sha256"] == artifact.sha256
                if output_root is not None:
                    local = dataclasses.replace(artifact, path=output_root / artifact.path)
                    assert storage.verify_artifact(local), f"trial {t.number}: adapter changed"
                    assert (local.path / CONFIG_NAME).is_file()
            else:
                assert artifact is None, f"{t.state.name} trial {t.number} has an adapter"
    assert claimed is not None and claimed[1] == len(finished), f"budget {claimed}"
    if output_root is not None:
        assert leftover_temp_dirs(output_root, name) == []
        stray = sorted(set(OUTPUT_FOLDERS) & (set(os.listdir(Path.cwd())) - _CWD_BEFORE))
        assert stray == [], f"written outside the output root, in {Path.cwd()}: {stray}"
    # Count the workers' connections, not this test process's own pools (engines it opened to
    # check the above); a killed worker's server backends end when the server notices the
    # closed socket: give them a few seconds before counting.
    storage.dispose_engines()
    gc.collect()
    deadline = time.monotonic() + 15
    while (open_now := count_connections(url)) > max_connections and time.monotonic() < deadline:
        time.sleep(0.5)
    assert open_now <= max_connections, f"{open_now} connections open, budget {max_connections}"
    return trials


def long_fields(url: str, name: str, trial: optuna.trial.FrozenTrial) -> dict[str, object]:
    """A trial's long fields (train config, adapter, whole fail reason): its record in our
    tables over its user attributes (``hpo.study.trial_records``)."""
    records = records_of(storage.open_storage(url), name, [trial.number])
    return trial_fields(trial.user_attrs, records.get(trial.number))
