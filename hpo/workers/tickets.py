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


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM back during a budget update, so that the update and our note of it are
    never split by the signal; a signal that came meanwhile is delivered afterwards."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
