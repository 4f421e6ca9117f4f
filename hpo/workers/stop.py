"""How a worker (:mod:`hpo.workers.worker`) ends a trial it could not finish: the stop signal, the
clean stop that fails the trial and gives its ticket back, the re-queue of a configuration
that failed for a reason outside its parameters, and the handling of another worker's stale
trial."""

from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path
from types import FrameType
from typing import Any

import optuna

import storage
from hpo.workers.objective import FAIL_REASON_ATTR, WORKER_ATTR
from hpo.workers.place import PLACE_ATTRS
from hpo.workers.tickets import Ticket, defer_signal, give_back, running_numbers

TrialState = optuna.trial.TrialState
log = logging.getLogger(__name__)


class WorkerStopped(KeyboardInterrupt):
    """Raised in the worker on SIGTERM: the current trial is failed at once, not left RUNNING."""


MAX_RETRY = 3
"""How many times one configuration is re-queued after its worker died (the trial went stale
with no reason recorded: perhaps the parameters themselves kill the process, e.g. the
kernel's out-of-memory killer). Transient failures, whose cause is known and outside the
parameters (a stop signal, a full disk, a lost database), spend none of them: a seed config
is never lost however many such episodes come."""

RETRIES_SPENT_ATTR = "hpo:retries_spent"
"""Trial system attribute: how many of :data:`MAX_RETRY` the configuration has spent; each
re-queued copy carries it on, as Optuna's ``retry_history`` is carried on."""


_RUN_ATTRS = frozenset(
    {
        FAIL_REASON_ATTR,
        "prune_reason",  # hpo.workers.objective.PRUNE_REASON_ATTR, of the step budget
        WORKER_ATTR,
        "train_config",
        "train_seconds",
        "train_steps",
        "adapter_path",
        "adapter_sha256",
    }
)
"""User attributes written by a run of a trial; a re-queued copy starts without them."""


def requeue(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    max_retry: int | None = MAX_RETRY,
    *,
    transient: bool,
) -> None:
    """Queue a copy of a failed trial with the same parameters.

    Optuna's ``RetryHeartbeatStaleTrialCallback`` makes the copy, for every failure outside
    the parameters, so that ``retried_trial_number`` links each retry to its original. Its own
    limit counts every retry, so the limit is ours: only failures of unknown cause (a dead
    worker) spend one of ``max_retry``; a transient failure re-queues for free. The copy keeps
    the trial's own attributes (``seed_config``) but not those of its run (the reason it
    failed, where it ran).

    Args:
        study: The trial's study.
        trial: The failed trial.
        max_retry: Retries of unknown cause a configuration may spend (None: no limit).
        transient: Whether the cause is known and outside the parameters (a stop signal,
            an ``OSError``, a lost database): then no retry is spent.
    """
    spent = int(trial.system_attrs.get(RETRIES_SPENT_ATTR, 0)) + (0 if transient else 1)
    if max_retry is not None and spent > max_retry:
        log.warning(
            "trial %d not re-queued: its configuration's worker died %d times", trial.number, spent
        )
        return
    original = copy.deepcopy(trial)
    original.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in _RUN_ATTRS}
    kept = {k: v for k, v in trial.system_attrs.items() if k not in PLACE_ATTRS}
    original.system_attrs = {**kept, RETRIES_SPENT_ATTR: spent}
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, original)
    log.warning("trial %d re-queued with the same parameters", trial.number)


class StaleTrialHandler:
    """Re-queues a stale trial (same params), gives its budget ticket back and removes the
    temp folder its dead worker left."""

    def __init__(
        self,
        engine: Any,
        study_name: str,
        max_retry: int = MAX_RETRY,
        *,
        guard: storage.OutageGuard | None = None,
        trials_dir: Path | None = None,
    ) -> None:
        self.engine = engine
        self.study_name = study_name
        self.max_retry = max_retry
        self.guard = guard
        self.trials_dir = trials_dir

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log.warning("trial %d went stale (its worker died); re-queued", trial.number)

        def release() -> None:
            with storage.session_scope(self.engine) as session:
                storage.release_ticket(session, self.study_name)

        release() if self.guard is None else self.guard.call(release)
        requeue(study, trial, self.max_retry, transient=False)
        if self.trials_dir is not None:
            sweep_leftovers(study, self.trials_dir)


def sweep_leftovers(study: optuna.Study, trials_dir: Path) -> None:
    """Remove the temp folders of trials that no longer run (left by a killed worker)."""
    for path in storage.sweep_temp_dirs(trials_dir, lambda: running_numbers(study)):
        log.warning("removed %s, left by a trial that no longer runs", path)


def storage_id(rdb: optuna.storages.RDBStorage, study_id: int, number: int | None) -> int | None:
    """The storage id of the study's trial with this number (None for None)."""
    return None if number is None else rdb.get_trial_id_from_study_id_trial_number(study_id, number)


def finished_elsewhere(rdb: optuna.storages.RDBStorage, trial_id: int | None) -> bool:
    """Whether our trial was failed by someone else while it ran.

    Asked when ``optimize`` raised ``UpdateFinishedTrialError`` or ``ValueError``: Optuna
    refuses to store the end of a trial that is no longer RUNNING. The objective's own errors
    never get here (``catch=(Exception,)`` stores them as FAIL), so a FAIL trial here was
    failed by another worker's sweep of stale trials, which also gave its ticket back and
    re-queued it. Decided by the stored state, not by the wording of Optuna's message, which
    may change.
    """
    return trial_id is not None and rdb.get_trial(trial_id).state == optuna.trial.TrialState.FAIL


def stop_cleanly(
    rdb: optuna.storages.RDBStorage,
    trial_id: int | None,
    engine: Any,
    study_name: str,
    *,
    ticket: Ticket | None = None,
    guard: storage.OutageGuard | None = None,
    outside_params: bool = True,
) -> optuna.trial.FrozenTrial | None:
    """After SIGTERM: fail our trial if it is still RUNNING, and give the ticket back unless
    the trial finished (COMPLETE or PRUNED) before the signal landed.

    The signal may land anywhere: while waiting for a ticket (none held: nothing to give
    back), between the claim and the trial's creation (``trial_id`` None: the ticket is given
    back), inside the objective (Optuna has stored FAIL with the signal as ``fail_reason``),
    between a failed trial's end and the worker's release of its ticket (given back here), or
    after Optuna stored COMPLETE or PRUNED (the ticket stays used). A FAIL trial without a
    ``fail_reason`` was failed as stale by another worker, which gave its ticket back and
    re-queued it. The worker ignores a second signal during this cleanup.

    Args:
        rdb: The worker's Optuna storage.
        trial_id: Our trial's storage id, None when none was created.
        engine: Our tables' engine.
        study_name: The study.
        ticket: Whether we hold a ticket (None: held).
        guard: Waits out a database outage (None: no retries).
        outside_params: Whether a trial that the objective failed failed for a reason outside
            its parameters (the signal itself is one).

    Returns:
        The trial when it failed here for a reason outside its parameters (to be re-queued),
        else None.
    """
    ticket = Ticket(held=True) if ticket is None else ticket
    fail = optuna.trial.TrialState.FAIL
    trial = None if trial_id is None else rdb.get_trial(trial_id)
    if trial_id is not None and trial is not None and trial.state == TrialState.RUNNING:
        ours = False
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            rdb.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, "WorkerStopped: signal")
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            ours = rdb.set_trial_state_values(trial_id, fail)
        trial = rdb.get_trial(trial_id)
        outside_params = True
    else:
        ours = trial is None or (trial.state == fail and FAIL_REASON_ATTR in trial.user_attrs)
    if ours:
        give_back(engine, study_name, guard, ticket)
    return trial if trial is not None and ours and outside_params else None


def raise_stop(signum: int, frame: FrameType | None) -> None:
    """The worker's SIGTERM handler: raise :class:`WorkerStopped` where the worker is, or
    once it leaves a budget update (:func:`~hpo.workers.tickets.signals_deferred`)."""
    if defer_signal(signum):
        return
    raise WorkerStopped(f"worker got signal {signum}")
