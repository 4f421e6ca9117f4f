"""The trial worker: one per GPU, on any machine that reaches the database.

Loop: claim a ticket of the study's exact budget -> run one trial through
``Study.optimize(n_trials=1)`` (so Optuna records heartbeats and sweeps stale trials) ->
repeat until the budget is spent. A FAILed trial gives its ticket back; a trial whose
worker died goes stale, is failed by the next sweep, gives its ticket back and is re-queued
with the same parameters (``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import optuna

import storage
from hpo.objective import Objective, TrialContext
from hpo.pipeline import load_study_cluster
from hpo.strategies import make_pruner, make_sampler
from hpo.study import GRACE_PERIOD, load_study, optuna_storage

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 3
"""A worker whose trials fail this many times in a row stops: something is broken."""


class WorkerStopped(KeyboardInterrupt):
    """Raised in the worker on SIGTERM: the current trial is failed at once, not left RUNNING."""


@dataclass
class WorkerSummary:
    """What one worker did."""

    worker_index: int
    trials: list[tuple[int, str]] = field(default_factory=list)
    stopped_by_signal: bool = False

    def count(self, state: str) -> int:
        """Trials of this worker that ended in the state (COMPLETE, PRUNED, FAIL)."""
        return sum(1 for _, s in self.trials if s == state)


class _StaleTrialHandler:
    """Re-queues a stale trial (same params) and gives its budget ticket back."""

    def __init__(self, engine: Any, study_name: str, max_retry: int = 3) -> None:
        self.engine = engine
        self.study_name = study_name
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log.warning("trial %d went stale (its worker died); re-queued", trial.number)
        with storage.session_scope(self.engine) as session:
            storage.release_ticket(session, self.study_name)
        self.retry(study, trial)


def _collect(into: list[optuna.trial.FrozenTrial]) -> Any:
    """A study callback that keeps each finished trial (its final state) in ``into``."""
    return lambda _study, trial: into.append(trial)


def _study_is_done(study: optuna.Study, engine: Any, study_name: str) -> bool:
    """Whether the budget is spent and no trial runs (checked before loading a model)."""
    optuna.storages.fail_stale_trials(study)
    with storage.session_scope(engine) as session:
        spent = storage.budget(session, study_name) is None or storage.budget_spent(
            session, study_name
        )  # trials or steps
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return spent and not running


def _wait_for_ticket(study: optuna.Study, engine: Any, study_name: str, poll: float) -> bool:
    """Claim a ticket of the budget; while none is free but trials still run elsewhere, wait.

    A worker that died holds its ticket until its trial goes stale. Sweeping stale trials
    here (not only inside ``optimize``) gives that ticket back and re-queues the trial, so
    the study still ends with the trials asked for as long as one worker is alive.

    Returns:
        True when a ticket was claimed, False when the budget is spent and nothing runs.
    """
    running = (optuna.trial.TrialState.RUNNING,)
    while True:
        optuna.storages.fail_stale_trials(study)
        with storage.session_scope(engine) as session:
            if storage.claim_ticket(session, study_name):
                return True
        if not study.get_trials(deepcopy=False, states=running):
            return False
        time.sleep(poll)


def _storage_id(rdb: optuna.storages.RDBStorage, study_id: int, number: int | None) -> int | None:
    """The storage id of the study's trial with this number (None for None)."""
    return None if number is None else rdb.get_trial_id_from_study_id_trial_number(study_id, number)


def _finished_elsewhere(rdb: optuna.storages.RDBStorage, trial_id: int | None) -> bool:
    """Whether our trial was failed by someone else while it ran.

    Asked when ``optimize`` raised ``UpdateFinishedTrialError`` or ``ValueError``: Optuna
    refuses to store the end of a trial that is no longer RUNNING. The objective's own errors
    never get here (``catch=(Exception,)`` stores them as FAIL), so a FAIL trial here was
    failed by another worker's sweep of stale trials, which also gave its ticket back. Decided by
    the stored state, not by the wording of Optuna's message, which may change.
    """
    return trial_id is not None and rdb.get_trial(trial_id).state == optuna.trial.TrialState.FAIL


def _stop_cleanly(
    rdb: optuna.storages.RDBStorage, trial_id: int | None, engine: Any, study_name: str
) -> None:
    """After SIGTERM inside ``optimize``: fail our trial if it is still RUNNING, and give the
    ticket back unless the trial finished (COMPLETE or PRUNED) before the signal landed."""
    state = None if trial_id is None else rdb.get_trial(trial_id).state
    if trial_id is not None and state == optuna.trial.TrialState.RUNNING:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            rdb.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        state = optuna.trial.TrialState.FAIL
    if state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
        with storage.session_scope(engine) as session:
            storage.release_ticket(session, study_name)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise WorkerStopped(f"worker got signal {signum}")


def run_worker(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    worker_index: int = 0,
    threads: int | None = None,
    grace_period: int = GRACE_PERIOD,
    max_trials: int | None = None,
    poll_seconds: float = 2.0,
) -> WorkerSummary:
    """Run trials of one study until its budget is spent (or ``max_trials`` ran here).

    Args:
        url: Storage URL shared by all workers.
        study_name: A study made by ``hpo study create``.
        output_root: Root of ``models/``, ``logs/`` (same layout on every machine).
        worker_index: Distinguishes workers; offsets the sampler seed.
        threads: CPU threads for torch (None: torch's default).
        grace_period: Seconds without heartbeat after which a trial is stale.
        max_trials: Stop after this many trials in this worker.
        poll_seconds: While the budget is spent but other workers' trials still run, how
            often to check whether one of them went stale (its ticket is then free again).
    """
    from trainers.base_model import load_base_model, set_threads
    from trainers.batching import prompt_pairs

    engine = storage.open_storage(url)
    on_stale = _StaleTrialHandler(engine, study_name)
    # Kept to look our trials up by number with the storage's public getters.
    rdb = optuna_storage(url, heartbeat=True, on_stale=on_stale, grace_period=grace_period)
    study, config = load_study(url, study_name, rdb=rdb)
    study_id = rdb.get_study_id_from_name(study_name)
    study.sampler = make_sampler(config.sampler, worker_index)
    study.pruner = make_pruner(config.pruner)
    summary = WorkerSummary(worker_index)
    if _study_is_done(study, engine, study_name):
        log.info("study %s: budget spent and no trial running; nothing to do", study_name)
        return summary
    section = config.study
    cluster = load_study_cluster(engine, section)
    data = config.train.data
    set_threads(threads)
    ctx = TrialContext(
        config=config,
        engine=engine,
        layout=storage.OutputLayout(Path(output_root).resolve()),
        base=load_base_model(config.model),
        train=prompt_pairs(cluster.personas, "train", data.max_train_per_persona),
        val=prompt_pairs(cluster.personas, "val", data.max_val_per_persona),
        worker_index=worker_index,
    )
    objective = Objective(ctx)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    failures = 0
    log.info(
        "worker %d (pid %d) on study %s: %d train / %d val examples",
        worker_index,
        os.getpid(),
        study_name,
        len(ctx.train),
        len(ctx.val),
    )
    try:
        while max_trials is None or len(summary.trials) < max_trials:
            if not _wait_for_ticket(study, engine, study_name, poll_seconds):
                break
            finished: list[optuna.trial.FrozenTrial] = []
            # Set by the objective once Optuna has created the trial; None while still asking.
            objective.last_trial_number = None
            try:
                study.optimize(
                    objective,
                    n_trials=1,
                    catch=(Exception,),
                    callbacks=[_collect(finished)],
                    gc_after_trial=False,
                )
            except WorkerStopped:
                summary.stopped_by_signal = True
                trial_id = _storage_id(rdb, study_id, objective.last_trial_number)
                _stop_cleanly(rdb, trial_id, engine, study_name)
                break
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
                if not _finished_elsewhere(
                    rdb, _storage_id(rdb, study_id, objective.last_trial_number)
                ):
                    raise
                # Our heartbeat stopped (a database error ends Optuna's heartbeat thread), so
                # another worker failed the trial as stale, freed its ticket and re-queued it.
                # Drop it: nothing was saved or told.
                log.warning("trial was finished by another worker (stale): %s", exc)
                continue
            trial = finished[-1]
            summary.trials.append((trial.number, trial.state.name))
            if trial.state == optuna.trial.TrialState.FAIL:
                with storage.session_scope(engine) as session:
                    storage.release_ticket(session, study_name)
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise RuntimeError(
                        f"{failures} trials failed in a row; last: trial "
                        f"{trial.number}; see the worker log"
                    )
            else:
                failures = 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return summary
