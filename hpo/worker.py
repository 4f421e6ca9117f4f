"""The trial worker: one per GPU, on any machine that reaches the database.

Loop: claim a ticket of the study's exact budget -> run one trial through
``Study.optimize(n_trials=1)`` (so Optuna records heartbeats and sweeps stale trials) ->
repeat until the budget is spent. A FAILed trial gives its ticket back; a trial whose
worker died goes stale, is failed by the next sweep, gives its ticket back and is re-queued
with the same parameters (``RetryHeartbeatStaleTrialCallback``). A trial that failed for a
reason outside its parameters (a stop signal, an ``OSError``, a lost database) is re-queued
the same way, up to :data:`MAX_RETRY` times in all.

Faults the worker rides out (README, "Guarantees"): a database outage shorter than the grace
period (every storage call waits it out with backoff, :class:`storage.OutageGuard`); past it,
the worker exits with one line naming the database. At start it refuses an output root it
could not write to, and removes temp folders left by killed workers.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import optuna

import storage
from hpo.objective import FAIL_REASON_ATTR, WORKER_ATTR, Objective, TrialContext
from hpo.pipeline import load_study_cluster
from hpo.strategies import make_pruner, make_sampler
from hpo.study import GRACE_PERIOD, load_study, optuna_storage

TrialState = optuna.trial.TrialState
log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 3
"""A worker whose trials fail this many times in a row stops: something is broken."""


class WorkerStopped(KeyboardInterrupt):
    """Raised in the worker on SIGTERM: the current trial is failed at once, not left RUNNING."""


class OutputRootError(ValueError):
    """The output root is missing, not a folder, not writable or too full (bad input)."""


MIN_FREE_BYTES = 256 * 1024 * 1024
"""Free space the output root needs at start: a few adapters and logs of a small model."""
MAX_RETRY = 3
"""How many times one configuration is re-queued after failures outside its parameters
(a dead worker, a stop signal, a full disk, a lost database), counting all of them."""
_RUN_ATTRS = frozenset(
    {
        FAIL_REASON_ATTR,
        "prune_reason",  # hpo.objective.PRUNE_REASON_ATTR, of the step budget
        WORKER_ATTR,
        "train_config",
        "train_seconds",
        "train_steps",
        "adapter_path",
        "adapter_sha256",
    }
)
"""User attributes written by a run of a trial; a re-queued copy starts without them."""


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


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGTERM back during a budget update, so that the update and our note of it are
    never split by the signal; a signal that came meanwhile is delivered afterwards."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass
class _Ticket:
    """Whether this worker holds a claimed, unused ticket of the budget."""

    held: bool = False


def _release(
    engine: Any, study_name: str, guard: storage.OutageGuard | None, ticket: _Ticket
) -> None:
    """Give our ticket back (a failed trial, or a stop before the trial finished)."""

    def release() -> None:
        with storage.session_scope(engine) as session:
            storage.release_ticket(session, study_name)

    with _signals_deferred():
        if ticket.held:
            release() if guard is None else guard.call(release)
            ticket.held = False


def _requeue(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, max_retry: int = MAX_RETRY
) -> None:
    """Queue a copy of a failed trial with the same parameters, up to ``max_retry`` times.

    Optuna's ``RetryHeartbeatStaleTrialCallback`` does it for stale trials; it is used for
    every failure outside the parameters, so that ``retried_trial_number`` links each retry
    to its original and one retry count covers all causes. The copy keeps the trial's
    own attributes (``seed_config``) but not those of its run (the reason it failed).
    """
    original = copy.deepcopy(trial)
    original.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in _RUN_ATTRS}
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, original)
    log.warning("trial %d re-queued with the same parameters", trial.number)


class _StaleTrialHandler:
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
        _requeue(study, trial, self.max_retry)
        if self.trials_dir is not None:
            _sweep_leftovers(study, self.trials_dir)


def _running_numbers(study: optuna.Study) -> set[str]:
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return {str(t.number) for t in running}


def _sweep_leftovers(study: optuna.Study, trials_dir: Path) -> None:
    """Remove the temp folders of trials that no longer run (left by a killed worker)."""
    for path in storage.sweep_temp_dirs(trials_dir, lambda: _running_numbers(study)):
        log.warning("removed %s, left by a trial that no longer runs", path)


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


def _wait_for_ticket(
    study: optuna.Study,
    engine: Any,
    study_name: str,
    poll: float,
    guard: storage.OutageGuard,
    ticket: _Ticket,
) -> bool:
    """Claim a ticket of the budget; while none is free but trials still run elsewhere, wait.

    A worker that died holds its ticket until its trial goes stale. Sweeping stale trials
    here (not only inside ``optimize``) gives that ticket back and re-queues the trial, so
    the study still ends with the trials asked for as long as one worker is alive. A ticket
    still held (a trial that could not start) is used again. Every call waits out a database
    outage shorter than the guard's patience.

    Returns:
        True when a ticket is held, False when the budget is spent and nothing runs.
    """

    def claim() -> bool:
        with storage.session_scope(engine) as session:
            return storage.claim_ticket(session, study_name)

    while True:
        guard.call(optuna.storages.fail_stale_trials, study)
        if ticket.held:
            return True
        with _signals_deferred():
            ticket.held = guard.call(claim)
        if ticket.held:
            return True
        if not _running_numbers(study):
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
    failed by another worker's sweep of stale trials, which also gave its ticket back and
    re-queued it. Decided by the stored state, not by the wording of Optuna's message, which
    may change.
    """
    return trial_id is not None and rdb.get_trial(trial_id).state == optuna.trial.TrialState.FAIL


def _stop_cleanly(
    rdb: optuna.storages.RDBStorage,
    trial_id: int | None,
    engine: Any,
    study_name: str,
    *,
    ticket: _Ticket | None = None,
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
    ticket = _Ticket(held=True) if ticket is None else ticket
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
        _release(engine, study_name, guard, ticket)
    return trial if trial is not None and ours and outside_params else None


def _free_memory() -> None:
    """Collect the failed trial's objects and hand cached GPU memory back (after running out
    of memory, the next trial starts with what the failed one held)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


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
    min_free_bytes: int = MIN_FREE_BYTES,
) -> WorkerSummary:
    """Run trials of one study until its budget is spent (or ``max_trials`` ran here).

    Args:
        url: Storage URL shared by all workers.
        study_name: A study made by ``hpo study create``.
        output_root: Root of ``models/``, ``logs/`` (same layout on every machine).
        worker_index: Distinguishes workers; offsets the sampler seed.
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

    layout = storage.OutputLayout(Path(output_root).resolve())
    check_output_root(layout.root, min_free_bytes)
    engine = storage.open_storage(url)
    guard = storage.OutageGuard(url, patience=grace_period)
    trials_dir = layout.trial_adapter_dir(study_name, 0).parent
    on_stale = _StaleTrialHandler(engine, study_name, guard=guard, trials_dir=trials_dir)
    # Kept to look our trials up by number with the storage's public getters.
    rdb = optuna_storage(
        url, heartbeat=True, on_stale=on_stale, grace_period=grace_period, guard=guard
    )
    study, config = load_study(url, study_name, rdb=rdb)
    study_id = rdb.get_study_id_from_name(study_name)
    study.sampler = make_sampler(config.sampler, worker_index)
    study.pruner = make_pruner(config.pruner)
    summary = WorkerSummary(worker_index)
    done = guard.call(_study_is_done, study, engine, study_name)
    _sweep_leftovers(study, trials_dir)
    if done:
        log.info("study %s: budget spent and no trial running; nothing to do", study_name)
        return summary
    section = config.study
    cluster = load_study_cluster(engine, section)
    data = config.train.data
    set_threads(threads)
    ctx = TrialContext(
        config=config,
        engine=engine,
        layout=layout,
        base=load_base_model(config.model),
        train=prompt_pairs(cluster.personas, "train", data.max_train_per_persona),
        val=prompt_pairs(cluster.personas, "val", data.max_val_per_persona),
        worker_index=worker_index,
        guard=guard,
    )
    objective = Objective(ctx)
    log.info(
        "worker %d (pid %d) on study %s: %d train / %d val examples",
        worker_index,
        os.getpid(),
        study_name,
        len(ctx.train),
        len(ctx.val),
    )
    previous = signal.signal(signal.SIGTERM, _raise_stop)
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
    ticket = _Ticket()
    failures = 0
    while max_trials is None or len(summary.trials) < max_trials:
        finished: list[optuna.trial.FrozenTrial] = []
        # Set by the objective once Optuna has created the trial; None while still asking.
        objective.last_trial_number = None
        try:
            if not _wait_for_ticket(study, engine, study_name, poll_seconds, guard, ticket):
                break
            study.optimize(
                objective,
                n_trials=1,
                catch=(Exception,),
                callbacks=[_collect(finished)],
                gc_after_trial=False,
            )
            with _signals_deferred():  # a stop now finds the trial's end fully handled
                trial = finished[-1]
                summary.trials.append((trial.number, trial.state.name))
                if trial.state == TrialState.FAIL:
                    _release(engine, study_name, guard, ticket)
                    if objective.last_fault_outside_params:
                        _requeue(study, trial)
                    failures += 1
                else:
                    ticket.held = False  # used by the trial
                    failures = 0
                objective.last_trial_number = None
        except WorkerStopped:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the cleanup runs to its end
            summary.stopped_by_signal = True
            trial_id = _storage_id(rdb, study_id, objective.last_trial_number)
            stopped = _stop_cleanly(
                rdb,
                trial_id,
                engine,
                study_name,
                ticket=ticket,
                guard=guard,
                outside_params=objective.last_fault_outside_params,
            )
            if stopped is not None:
                _requeue(study, stopped)
            return
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
            if guard.gave_up:
                raise guard.unavailable() from exc
            if not _finished_elsewhere(
                rdb, _storage_id(rdb, study_id, objective.last_trial_number)
            ):
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
            _free_memory()
        if failures >= MAX_CONSECUTIVE_FAILURES:
            raise RuntimeError(
                f"{failures} trials failed in a row; last: trial {trial.number} "
                f"({trial.user_attrs.get(FAIL_REASON_ATTR, 'no reason recorded')}); "
                "see the worker log"
            )
