"""Worker indexes are claimed atomically: concurrent claims never overlap, on SQLite and on the
real PostgreSQL, and each study counts on its own."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from storage import claim_worker_indexes, open_storage, session_scope

THREADS = 6
CLAIMS = 5  # per thread, of 1..3 indexes each


def test_concurrent_claims_never_overlap(engine: sa.Engine) -> None:
    barrier = threading.Barrier(THREADS)
    claimed: list[range] = []
    errors: list[BaseException] = []

    def claim(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(CLAIMS):
                with session_scope(engine) as session:
                    got = claim_worker_indexes(session, "s", n=1 + (worker + i) % 3)
                claimed.append(got)  # list.append is atomic in CPython
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    indexes = sorted(i for r in claimed for i in r)
    total = sum(1 + (w + i) % 3 for w in range(THREADS) for i in range(CLAIMS))
    assert indexes == list(range(total))  # every index once, none skipped


def test_each_study_counts_on_its_own(engine: sa.Engine) -> None:
    with session_scope(engine) as session:
        assert claim_worker_indexes(session, "a") == range(0, 1)
        assert claim_worker_indexes(session, "a", n=4) == range(1, 5)
        assert claim_worker_indexes(session, "b") == range(0, 1)
        assert claim_worker_indexes(session, "a") == range(5, 6)


def test_a_claim_needs_a_positive_count(sqlite_url: str) -> None:
    engine = open_storage(sqlite_url)
    for n in (0, -1, True, 1.5):
        with session_scope(engine) as session, pytest.raises(ValueError, match=f"invalid n {n!r}"):
            claim_worker_indexes(session, "s", n=n)  # type: ignore[arg-type]
