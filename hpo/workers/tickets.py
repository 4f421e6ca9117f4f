"""The worker's hold on the study's exact budget (:mod:`storage.budget`): claim a ticket,
wait while others' trials may still free one, give it back; each update shielded from
SIGTERM so that the update and the worker's note of it are never split."""

from __future__ import annotations

import contextlib
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna

import storage


@dataclass
class _Deferral:
    depth: int = 0
    """How many :func:`signals_deferred` blocks the main thread is in."""
    pending: int | None = None
    """A signal that came inside them, delivered when the outermost one ends."""


_DEFERRAL = _Deferral()


def defer_signal(signum: int) -> bool:
    """For the worker's signal handler: note ``signum`` and return True inside
    :func:`signals_deferred` (the block ends, then the signal is delivered again); False
    outside, where the handler acts at once."""
    if _DEFERRAL.depth == 0:
        return False
    _DEFERRAL.pending = signum
    return True


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM back during a budget update, so that the update and our note of it are
    never split by the signal; a signal that came meanwhile is delivered afterwards.

    The worker's handler asks :func:`defer_signal`. A signal mask cannot do this: Linux gives
    a process's signal to any thread that does not block it (torch's OpenMP threads, Optuna's
    heartbeat thread), and Python then runs the handler in the main thread at once, whatever
    the main thread's mask.
    """
    _DEFERRAL.depth += 1
    try:
        yield
    finally:
        _DEFERRAL.depth -= 1
        if _DEFERRAL.depth == 0 and _DEFERRAL.pending is not None:
            signum, _DEFERRAL.pending = _DEFERRAL.pending, None
            signal.raise_signal(signum)  # to this thread: the handler runs now, outside


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials``, without its ExperimentalWarning on every call (the
    heartbeat API has been stable since Optuna 2.9; the warning filled every worker's log)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


@dataclass
class Ticket:
    """Whether this worker holds a claimed, unused ticket of the budget."""

    held: bool = False


def give_back(
    engine: Any, study_name: str, guard: storage.OutageGuard | None, ticket: Ticket
) -> None:
    """Give our ticket back (a failed trial, or a stop before the trial finished)."""

    def release() -> None:
        with storage.session_scope(engine) as session:
            storage.release_ticket(session, study_name)

    with signals_deferred():
        if ticket.held:
            release() if guard is None else guard.call(release)
            ticket.held = False


def running_numbers(study: optuna.Study) -> set[str]:
    """The numbers of the study's RUNNING trials, as strings (the temp folders' names)."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return {str(t.number) for t in running}


def study_is_done(study: optuna.Study, engine: Any, study_name: str) -> bool:
    """Whether the budget is spent and no trial runs (checked before loading a model)."""
    fail_stale_trials(study)
    with storage.session_scope(engine) as session:
        spent = storage.budget(session, study_name) is None or storage.budget_spent(
            session, study_name
        )  # trials or steps
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return spent and not running


def wait_for_ticket(
    study: optuna.Study,
    engine: Any,
    study_name: str,
    poll: float,
    guard: storage.OutageGuard,
    ticket: Ticket,
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
        guard.call(fail_stale_trials, study)
        if ticket.held:
            return True
        with signals_deferred():
            ticket.held = guard.call(claim)
        if ticket.held:
            return True
        if not running_numbers(study):
            return False
        time.sleep(poll)
