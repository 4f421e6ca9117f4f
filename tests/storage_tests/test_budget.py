from __future__ import annotations

import multiprocessing

import pytest
import sqlalchemy as sa

from storage import (
    StorageError,
    budget,
    claim_ticket,
    open_storage,
    release_ticket,
    session_scope,
    set_budget,
)

N_TRIALS = 25
ATTEMPTS = 12  # per worker: 4 x 12 = 48 attempts for 25 tickets


def _claim_worker(
    url: str, barrier: multiprocessing.synchronize.Barrier, queue: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    engine = open_storage(url)
    barrier.wait()
    won = 0
    for _ in range(ATTEMPTS):
        with session_scope(engine) as session:
            won += claim_ticket(session, "s")
    queue.put(won)


def test_budget_exact_under_concurrency(storage_url: str) -> None:
    engine = open_storage(storage_url)
    with session_scope(engine) as session:
        set_budget(session, "s", N_TRIALS)
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_claim_worker, args=(storage_url, barrier, queue)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    won = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert sum(won) == N_TRIALS
    with session_scope(engine) as session:
        assert budget(session, "s") == (N_TRIALS, N_TRIALS)


def test_release_and_reset(engine: sa.Engine) -> None:
    with session_scope(engine) as session:
        assert budget(session, "s") is None
        set_budget(session, "s", 1)
        assert claim_ticket(session, "s")
        assert not claim_ticket(session, "s")
        release_ticket(session, "s")
        assert claim_ticket(session, "s")
        set_budget(session, "s", 3)  # raising the budget keeps the claimed count
        assert budget(session, "s") == (3, 1)
        release_ticket(session, "s")
        release_ticket(session, "s")  # never below zero
        assert budget(session, "s") == (3, 0)
    with (
        pytest.raises(StorageError, match="'other' has no trial budget"),
        session_scope(engine) as session,
    ):
        claim_ticket(session, "other")
