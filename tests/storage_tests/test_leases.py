"""Leases: one holder at a time, on SQLite and PostgreSQL, with expiry and takeover."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import sqlalchemy as sa

from storage import (
    acquire_lease,
    database_now,
    get_lease,
    hold_lease,
    lease_holder_id,
    list_leases,
    open_storage,
    release_lease,
    renew_lease,
    session_scope,
)

STUDY = "s"


def _acquire(engine: sa.Engine, target: str, holder: str, ttl: float = 60) -> bool:
    with session_scope(engine) as session:
        return acquire_lease(session, STUDY, target, holder, ttl)


def _race_worker(
    url: str,
    holder: str,
    barrier: multiprocessing.synchronize.Barrier,
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    engine = open_storage(url)
    barrier.wait()
    won = [t for t in (f"trial:{i}" for i in range(10)) if _acquire(engine, t, holder)]
    queue.put((holder, won))


def test_one_holder_per_target_under_concurrency(storage_url: str) -> None:
    open_storage(storage_url)
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    holders = [f"h{i}" for i in range(4)]
    procs = [
        ctx.Process(target=_race_worker, args=(storage_url, h, barrier, queue)) for h in holders
    ]
    for p in procs:
        p.start()
    won = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    taken = [t for targets in won.values() for t in targets]
    assert sorted(taken) == sorted(f"trial:{i}" for i in range(10))  # each exactly once
    with session_scope(open_storage(storage_url)) as session:
        stored = {lease.target: lease.holder for lease in list_leases(session, STUDY)}
    assert stored == {t: h for h, targets in won.items() for t in targets}


def test_live_lease_is_refused_expired_one_taken_over(engine: sa.Engine) -> None:
    assert _acquire(engine, "trial:1", "a", ttl=0.5)
    assert not _acquire(engine, "trial:1", "b", ttl=60)  # live, someone else's
    assert _acquire(engine, "trial:1", "a", ttl=0.5)  # ours: taken again, extended
    time.sleep(0.8)
    assert _acquire(engine, "trial:1", "b", ttl=60)  # expired: taken over
    with session_scope(engine) as session:
        lease = get_lease(session, STUDY, "trial:1")
        # the killed holder cannot renew or release what was taken over
        assert not renew_lease(session, STUDY, "trial:1", "a", 60)
        assert not release_lease(session, STUDY, "trial:1", "a")
    assert lease is not None and lease.holder == "b"
    assert (lease.expires_at - lease.acquired_at).total_seconds() == pytest.approx(60)
    assert not _acquire(engine, "trial:1", "a", ttl=60)


def test_renew_extends_and_release_frees(engine: sa.Engine) -> None:
    assert _acquire(engine, "baselines", "a", ttl=1)
    with session_scope(engine) as session:
        before = get_lease(session, STUDY, "baselines")
        assert renew_lease(session, STUDY, "baselines", "a", 120)
        after = get_lease(session, STUDY, "baselines")
        now = database_now(session)
    assert before is not None and after is not None
    assert after.expires_at > before.expires_at
    assert 100 < (after.expires_at - now).total_seconds() <= 120
    assert now.tzinfo is not None
    with session_scope(engine) as session:
        assert release_lease(session, STUDY, "baselines", "a")
        assert get_lease(session, STUDY, "baselines") is None
    assert _acquire(engine, "baselines", "b")


def test_leases_are_per_study_and_target(engine: sa.Engine) -> None:
    assert _acquire(engine, "trial:1", "a")
    assert _acquire(engine, "trial:2", "b")
    with session_scope(engine) as session:
        assert acquire_lease(session, "other", "trial:1", "b", 60)


def test_hold_lease_renews_while_the_work_runs_and_releases(engine: sa.Engine) -> None:
    holder = lease_holder_id()
    with hold_lease(engine, STUDY, "trial:3", holder, 0.6) as held:
        assert held is not None
        with hold_lease(engine, STUDY, "trial:3", "other", 0.6) as refused:
            assert refused is None
        time.sleep(1.5)  # over twice the ttl: alive only because it is renewed
        assert not _acquire(engine, "trial:3", "other")
        assert not held.lost.is_set()
    with session_scope(engine) as session:
        assert get_lease(session, STUDY, "trial:3") is None


def test_hold_lease_releases_on_error_and_notices_a_takeover(engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError, match="boom"), hold_lease(engine, STUDY, "trial:4", "a", 60):
        raise RuntimeError("boom")
    with session_scope(engine) as session:
        assert get_lease(session, STUDY, "trial:4") is None

    with hold_lease(engine, STUDY, "trial:5", "a", 0.3) as held:
        assert held is not None
        with session_scope(engine) as session:  # as if "a" had stalled past its ttl
            release_lease(session, STUDY, "trial:5", "a")
        assert _acquire(engine, "trial:5", "b")
        assert held.lost.wait(2)
    with session_scope(engine) as session:
        lease = get_lease(session, STUDY, "trial:5")
    assert lease is not None and lease.holder == "b"  # a's exit left b's lease alone


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), True, "10"])
def test_bad_ttl_is_refused(engine: sa.Engine, ttl: object) -> None:
    with session_scope(engine) as session, pytest.raises(ValueError, match="invalid ttl_seconds"):
        acquire_lease(session, STUDY, "t", "a", ttl)  # type: ignore[arg-type]
