"""The trial worker: one per GPU, on any machine that reaches the database.

Loop: claim a ticket of the study's exact budget -> run one trial through
``Study.optimize(n_trials=1)`` (so Optuna records heartbeats and sweeps stale trials) ->
repeat until the budget is spent. A FAILed trial gives its ticket back; a trial whose
worker died goes stale, is failed by the next sweep, gives its ticket back and is re-queued
with the same parameters (``RetryHeartbeatStaleTrialCallback``). A trial that failed for a
reason outside its parameters (a stop signal, an ``OSError``, a lost database) is re-queued
the same way, however often: only a dead worker spends one of a configuration's
:data:`MAX_RETRY` retries.

Faults the worker rides out (docs/guarantees.md): a database outage shorter than the grace
period (every storage call waits it out with backoff, :class:`storage.OutageGuard`); past it,
the worker exits with one line naming the database. At start it refuses an output root it
could not write to, and removes temp folders left by killed workers.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

import storage
from hpo.artifacts import output_layout, store_outage
from hpo.datasets import load_study_cluster
from hpo.study.creation import GRACE_PERIOD, load_study, optuna_storage
from hpo.study.strategies import make_pruner, make_sampler
from hpo.study.trial_records import records_of, trial_fields
from hpo.workers.objective import FAIL_REASON_ATTR, Objective, TrialContext
from hpo.workers.place import WorkerPlace, claim_worker_index, place_recorder
from hpo.workers.stop import (
    MAX_RETRY,
    StaleTrialHandler,
    WorkerStopped,
    finished_elsewhere,
    raise_stop,
    requeue,
    stop_cleanly,
    storage_id,
    sweep_leftovers,
)
from hpo.workers.tickets import Ticket, give_back, signals_deferred, study_is_done, wait_for_ticket
from trainers.memory import free_memory

__all__ = [
    "MAX_CONSECUTIVE_FAILURES",
    "MAX_RETRY",
    "MIN_FREE_BYTES",
    "OutputRootError",
    "WorkerStopped",
    "WorkerSummary",
    "check_output_root",
    "run_worker",
]

TrialState = optuna.trial.TrialState
log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 3
"""A worker whose trials fail this many times in a row stops: something is broken."""


class OutputRootError(ValueError):
    """The output root is missing, not a folder, not writable or too full (bad input)."""


MIN_FREE_BYTES = 256 * 1024 * 1024
"""Free space the output root needs at start: a few adapters and logs of a small model."""


@dataclass
class WorkerSummary:
    """What one worker did."""

    worker_index: int
    trials: list[tuple[int, str]] = field(default_factory=list)
    stopped_by_signal: bool = False

    def count(self, state: str) -> int:
        """Trials of this worker that ended in the state (COMPLETE, PRUNED, FAIL)."""
        return sum(1 for _, s in self.trials if s == state)


def check_output_root(root: Path, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Refuse an output root that trials could not write to, before any trial is asked for.

    Args:
        root: The output root (``models/``, ``logs/`` go under it).
        min_free_bytes: Free space it must have.

    Raises:
        OutputRootError: Naming the folder and what is wrong with it.
    """
    if not root.exists():
        raise OutputRootError(f"output root {str(root)!r} does not exist: create it first")
    if not root.is_dir():
        raise OutputRootError(f"output root {str(root)!r} is not a folder")
    try:  # the real test: permissions, a read-only mount, root squashing on NFS
        with tempfile.TemporaryFile(dir=root, prefix=".hpo-write-check-"):
            pass
    except OSError as exc:
        raise OutputRootError(
            f"output root {str(root)!r} is not writable: {exc.strerror or exc}"
        ) from exc
    free = shutil.disk_usage(root).free
    if free < min_free_bytes:
        raise OutputRootError(
            f"output root {str(root)!r} has {free / 2**20:.0f} MiB free, less than the "
            f"{min_free_bytes / 2**20:.0f} MiB a worker needs: free some space"
        )


def _collect(into: list[optuna.trial.FrozenTrial]) -> Any:
    """A study callback that keeps each finished trial (its final state) in ``into``."""
    return lambda _study, trial: into.append(trial)


def run_worker(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    worker_index: int | None = None,
    threads: int | None = None,
    grace_period: int = GRACE_PERIOD,
    max_trials: int | None = None,
    poll_seconds: float = 2.0,
    min_free_bytes: int = MIN_FREE_BYTES,
) -> WorkerSummary:
    """Run trials of one study until its budget is spent (or ``max_trials`` ran here).

    Args:
        url: Storage URL shared by all workers.
        study_name: A study made by ``hpo study create``.
        output_root: Root of ``models/``, ``logs/`` (same layout on every machine).
        worker_index: Distinguishes workers; offsets the sampler seed. None: the next index
            of the study's counter in the database (:mod:`hpo.workers.place`).
        threads: CPU threads for torch (None: torch's default).
        grace_period: Seconds without heartbeat after which a trial is stale; also how long
            the worker waits out a database outage.
        max_trials: Stop after this many trials in this worker.
        poll_seconds: While the budget is spent but other workers' trials still run, how
            often to check whether one of them went stale (its ticket is then free again).
        min_free_bytes: Free space the output root needs at start.

    Raises:
        OutputRootError: The output root is missing, read-only or full (before any trial).
        storage.DatabaseUnavailable: The database stayed unreachable past the grace period.
    """
    from trainers.base_model import load_base_model, set_threads
    from trainers.batching import prompt_pairs

    layout = output_layout(output_root, patience=grace_period)  # the store probed
    check_output_root(layout.root, min_free_bytes)
    engine = storage.open_storage(url)
    guard = storage.OutageGuard(url, patience=grace_period)
    trials_dir = layout.trial_adapter_dir(study_name, 0).parent
    on_stale = StaleTrialHandler(engine, study_name, guard=guard, trials_dir=trials_dir)
    # Kept to look our trials up by number with the storage's public getters.
    rdb = optuna_storage(
        url, heartbeat=True, on_stale=on_stale, grace_period=grace_period, guard=guard
    )
    study, config = load_study(url, study_name, rdb=rdb)
    study_id = rdb.get_study_id_from_name(study_name)
    if worker_index is None:
        worker_index = claim_worker_index(engine, study_name, guard)
    study.sampler = make_sampler(config.sampler, worker_index)
    study.pruner = make_pruner(config.pruner)
    summary = WorkerSummary(worker_index)
    done = guard.call(study_is_done, study, engine, study_name)
    sweep_leftovers(study, trials_dir)
    if done:
        log.info("study %s: budget spent and no trial running; nothing to do", study_name)
        return summary
    section = config.study
    cluster = load_study_cluster(engine, section)
    data = config.train.data
    set_threads(threads)
    base = load_base_model(config.model)
    place = WorkerPlace.here(worker_index, base.device)
    ctx = TrialContext(
        config=config,
        engine=engine,
        layout=layout,
        base=base,
        train=prompt_pairs(cluster.personas, "train", data.max_train_per_persona),
        val=prompt_pairs(cluster.personas, "val", data.max_val_per_persona),
        worker_index=worker_index,
        guard=guard,
        record_place=place_recorder(rdb, study_id, place),
    )
    objective = Objective(ctx)
    log.info(
        "worker %d (%s) on study %s: %d train / %d val examples",
        worker_index,
        place.describe(),
        study_name,
        len(ctx.train),
        len(ctx.val),
    )
    previous = signal.signal(signal.SIGTERM, raise_stop)
    try:
        _run_trials(study, rdb, study_id, objective, guard, summary, max_trials, poll_seconds)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return summary


def _run_trials(
    study: optuna.Study,
    rdb: optuna.storages.RDBStorage,
    study_id: int,
    objective: Objective,
    guard: storage.OutageGuard,
    summary: WorkerSummary,
    max_trials: int | None,
    poll_seconds: float,
) -> None:
    """The worker's loop: a ticket, one trial, what its end means; until the budget is spent."""
    engine, study_name = objective.ctx.engine, objective.ctx.config.study.name
    ticket = Ticket()
    failures = 0
    while max_trials is None or len(summary.trials) < max_trials:
        finished: list[optuna.trial.FrozenTrial] = []
        # Set by the objective once Optuna has created the trial; None while still asking.
        objective.last_trial_number = None
        try:
            if not wait_for_ticket(study, engine, study_name, poll_seconds, guard, ticket):
                break
            study.optimize(
                objective,
                n_trials=1,
                catch=(Exception,),
                callbacks=[_collect(finished)],
                gc_after_trial=False,
            )
            with signals_deferred():  # a stop now finds the trial's end fully handled
                trial = finished[-1]
                summary.trials.append((trial.number, trial.state.name))
                if trial.state == TrialState.FAIL:
                    give_back(engine, study_name, guard, ticket)
                    if objective.last_fault_outside_params:
                        requeue(study, trial, transient=True)
                    failures += 1
                else:
                    ticket.held = False  # used by the trial
                    failures = 0
                objective.last_trial_number = None
        except WorkerStopped:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the cleanup runs to its end
            summary.stopped_by_signal = True
            trial_id = storage_id(rdb, study_id, objective.last_trial_number)
            stopped = stop_cleanly(
                rdb,
                trial_id,
                engine,
                study_name,
                ticket=ticket,
                guard=guard,
                outside_params=objective.last_fault_outside_params,
            )
            if stopped is not None:
                requeue(study, stopped, transient=True)
            return
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            if guard.gave_up:
                raise guard.unavailable() from exc
            if not finished_elsewhere(rdb, storage_id(rdb, study_id, objective.last_trial_number)):
                raise
            # Our heartbeat stopped (a database error ends Optuna's heartbeat thread), so
            # another worker failed the trial as stale, freed its ticket and re-queued it.
            # Drop it: nothing was saved or told.
            ticket.held = False
            log.warning("trial was finished by another worker (stale): %s", exc)
            continue
        except Exception as exc:
            # Optuna's _run_trial fails with an UnboundLocalError of its own when both its tell
            # and its get_trial fail: judged by our guard, not by that error.
            if guard.gave_up:
                raise guard.unavailable() from exc
            if storage.is_disconnect(exc) and objective.last_trial_number is None:
                # Optuna's own sweep before asking met an outage: keep the ticket, and wait
                # the outage out in ours.
                log.warning("database error before the trial began; trying again: %s", exc)
                continue
            raise
        if trial.state == TrialState.FAIL:
            free_memory()  # the next trial does not start with what the failed one held
            if (outage := store_outage(objective.ctx.layout)) is not None:
                raise outage  # the trial is re-queued; the store is down past the patience
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise RuntimeError(
                f"{failures} trials failed in a row; last: trial {trial.number} "
                f"({_fail_reason(engine, study_name, trial)}); "
                "see the worker log"
            )


def _fail_reason(engine: Any, study_name: str, trial: optuna.trial.FrozenTrial) -> str:
    """Why ``trial`` failed, from its record (or its user attributes, before the records)."""
    try:
        record = records_of(engine, study_name, [trial.number]).get(trial.number)
    except storage.StorageError:
        record = None
    return str(trial_fields(trial.user_attrs, record).get(FAIL_REASON_ATTR, "no reason recorded"))
