from __future__ import annotations

import multiprocessing

import pytest
import sqlalchemy as sa

from storage import (
    StepBudget,
    StorageError,
    budget,
    budget_spent,
    charge_steps,
    claim_ticket,
    open_storage,
    release_ticket,
    session_scope,
    set_budget,
    step_budget,
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


MAX_STEPS = 100
CHARGE_SIZES = (1, 2, 3, 4)  # one size per process, so the refused charge can be any of them


def _charge_worker(
    url: str, size: int, barrier: multiprocessing.synchronize.Barrier, queue: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    engine = open_storage(url)
    barrier.wait()
    charged, refused_then_charged = 0, False
    refused = False
    for _ in range(MAX_STEPS):
        with session_scope(engine) as session:
            ok = charge_steps(session, "s", size)
        charged += size if ok else 0
        refused_then_charged |= refused and ok
        refused |= not ok
    queue.put((charged, refused_then_charged))


def test_step_budget_exact_under_concurrency(storage_url: str) -> None:
    engine = open_storage(storage_url)
    with session_scope(engine) as session:
        set_budget(session, "s", 1000, max_steps=MAX_STEPS)
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(len(CHARGE_SIZES)), ctx.Queue()
    procs = [
        ctx.Process(target=_charge_worker, args=(storage_url, size, barrier, queue))
        for size in CHARGE_SIZES
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    charged = sum(c for c, _ in results)
    # Every granted step is counted once, never more than the limit; the charge that did not
    # fit needed at most max(CHARGE_SIZES) steps, so it came within that of the limit.
    assert MAX_STEPS - max(CHARGE_SIZES) < charged <= MAX_STEPS
    assert not any(late for _, late in results)  # after a refusal, nothing more was granted
    with session_scope(engine) as session:
        assert step_budget(session, "s") == StepBudget(MAX_STEPS, charged, spent=True)
        assert budget_spent(session, "s")
        assert not claim_ticket(session, "s")  # steps spent: no trial starts


def test_a_refused_charge_ends_the_step_budget(engine: sa.Engine) -> None:
    with session_scope(engine) as session:
        set_budget(session, "s", 5, max_steps=10)
        assert step_budget(session, "s") == StepBudget(10, 0, spent=False)
        assert claim_ticket(session, "s")
        assert charge_steps(session, "s", 6)
        assert not budget_spent(session, "s")
        assert not charge_steps(session, "s", 5)  # 11 > 10: refused, and the budget ends
        assert not charge_steps(session, "s", 1)  # a step would fit, but the budget has ended
        assert step_budget(session, "s") == StepBudget(10, 6, spent=True)
        assert budget_spent(session, "s")
        assert not claim_ticket(session, "s")
        assert budget(session, "s") == (5, 1)
        set_budget(session, "s", 5, max_steps=20)  # a new limit opens it, keeping the count
        assert step_budget(session, "s") == StepBudget(20, 6, spent=False)
        assert charge_steps(session, "s", 14)  # exactly to the limit
        assert step_budget(session, "s") == StepBudget(20, 20, spent=False)
        assert budget_spent(session, "s")  # all used: no ticket, though no charge was refused
        assert not claim_ticket(session, "s")


def test_without_a_step_limit_every_charge_is_granted(engine: sa.Engine) -> None:
    with session_scope(engine) as session:
        set_budget(session, "s", 1)
        for _ in range(3):
            assert charge_steps(session, "s", 10**6)
        assert step_budget(session, "s") == StepBudget(None, 3 * 10**6, spent=False)
        assert not step_budget(session, "s").ended  # type: ignore[union-attr]
        assert not budget_spent(session, "s")
        assert claim_ticket(session, "s")
        assert budget_spent(session, "s")  # the trials are spent


@pytest.mark.parametrize("n", [0, -1, True, 1.5])
def test_a_charge_must_be_a_positive_integer(engine: sa.Engine, n: object) -> None:
    with session_scope(engine) as session:
        set_budget(session, "s", 1, max_steps=10)
        with pytest.raises(ValueError, match=f"invalid n {n!r}: use an integer >= 1"):
            charge_steps(session, "s", n)  # type: ignore[arg-type]


def test_step_budget_errors_name_the_study_and_the_value(engine: sa.Engine) -> None:
    with session_scope(engine) as session:
        assert step_budget(session, "other") is None
        with pytest.raises(StorageError, match="'other' has no budget"):
            charge_steps(session, "other", 1)
        with pytest.raises(StorageError, match="'other' has no budget"):
            budget_spent(session, "other")
        with pytest.raises(ValueError, match="invalid max_steps -1"):
            set_budget(session, "s", 1, max_steps=-1)
        with pytest.raises(ValueError, match="invalid n_trials True"):
            set_budget(session, "s", True)
