"""Leases: which evaluator works on what, until when.

Two evaluators never evaluate the same target (a trial, the baselines, the promotion) at once:
each takes the target's lease first. :func:`acquire_lease` is one conditional write, an
``INSERT ... ON CONFLICT (study_name, target) DO UPDATE ... WHERE`` the stored lease has
expired or is already ours. It is exact under concurrency: on PostgreSQL two inserts of the
same key serialize on the primary key, and the loser's ``DO UPDATE`` locks the winner's row and
checks its ``WHERE`` against that committed row, so it finds the lease live and writes nothing;
on SQLite every transaction holds the database's write lock from ``BEGIN IMMEDIATE`` (see
:mod:`storage.engine`). Either way exactly one holder gets a row back.

The clock is the database's: PostgreSQL's ``now()``, SQLite's ``strftime('now')`` (a SQLite file
lives on one machine, so that is the machine's UTC clock). Evaluators on hosts whose clocks
disagree still agree on when a lease expires. Times are read inside the transaction that writes,
so a wait for the lock does not age them.

A killed evaluator's lease is never released. On the same host the next evaluator sees that
the holder's process is gone (the holder name carries host and pid) and takes the lease over at
once; from another host it waits until the lease expires after its time to live. A live one
renews it (:func:`renew_lease`) well before then:
:func:`hold_lease` does that from a background thread while the work runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storage.engine import dialect_insert, session_scope
from storage.errors import StorageError
from storage.models import EvaluationLease

log = logging.getLogger(__name__)

RENEWALS_PER_TTL = 3
"""A held lease is renewed this many times per time to live, so that two missed renewals (a
short database outage, a stalled thread) still leave it live."""


@dataclass(frozen=True)
class LeaseInfo:
    """A stored lease."""

    study_name: str
    target: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


def lease_holder_id() -> str:
    """A holder name unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _check_ttl(ttl_seconds: float) -> float:
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float):
        raise ValueError(f"invalid ttl_seconds {ttl_seconds!r}: use a positive number")
    if not ttl_seconds > 0:
        raise ValueError(f"invalid ttl_seconds {ttl_seconds!r}: use a positive number")
    return float(ttl_seconds)


def database_now(session: Session) -> datetime:
    """The database's current time, as an aware UTC datetime.

    PostgreSQL: ``now()`` (the transaction's start). SQLite: ``strftime('%Y-%m-%d %H:%M:%f',
    'now')``, read after ``BEGIN IMMEDIATE`` took the write lock.

    Args:
        session: An open session.

    Returns:
        The time, with millisecond resolution or better.
    """
    if session.get_bind().dialect.name == "postgresql":
        now = session.execute(select(func.now())).scalar_one()
        return now.astimezone(UTC)
    stamp = session.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    """SQLite hands stored datetimes back naive; they were written as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def acquire_lease(
    session: Session, study_name: str, target: str, holder: str, ttl_seconds: float
) -> bool:
    """Take the lease on ``target`` for ``ttl_seconds``, if it is free, expired or ours.

    One conditional write (see the module docstring for why it is exact). Taking a lease
    that is already ours extends it.

    Args:
        session: An open session; commit it at once (use a fresh ``session_scope``).
        study_name: The study the work belongs to.
        target: What is leased, e.g. ``"trial:12"`` or ``"baselines"``.
        holder: Who takes it, from :func:`lease_holder_id`.
        ttl_seconds: How long the lease lasts unless renewed.

    Returns:
        ``True`` if ``holder`` now holds the lease, ``False`` if another live holder does.

    Raises:
        ValueError: If ``ttl_seconds`` is not a positive number.
    """
    ttl = _check_ttl(ttl_seconds)
    now = database_now(session)
    expires = now + timedelta(seconds=ttl)
    stmt = dialect_insert(session, EvaluationLease).values(
        study_name=study_name, target=target, holder=holder, acquired_at=now, expires_at=expires
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["study_name", "target"],
        set_={"holder": holder, "acquired_at": now, "expires_at": expires},
        where=(EvaluationLease.expires_at < now) | (EvaluationLease.holder == holder),
    ).returning(EvaluationLease.holder)
    if session.execute(stmt).scalar_one_or_none() == holder:
        return True
    stored = session.execute(
        select(EvaluationLease.holder).where(
            EvaluationLease.study_name == study_name, EvaluationLease.target == target
        )
    ).scalar_one_or_none()
    if stored is None or not holder_is_gone(stored):
        return False
    taken = session.execute(
        update(EvaluationLease)
        .where(
            EvaluationLease.study_name == study_name,
            EvaluationLease.target == target,
            EvaluationLease.holder == stored,
        )
        .values(holder=holder, acquired_at=now, expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return False
    log.warning(
        "took lease %s of %s over from %s, whose process is gone", target, study_name, stored
    )
    return True


def holder_is_gone(holder: str) -> bool:
    """Whether a lease holder (``host:pid:random``) was a process of this host that no longer
    runs: its lease can be taken over at once instead of after its time to live.

    A holder on another host, or one whose pid still runs (perhaps reused by another process),
    counts as alive: its lease then expires by itself.
    """
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return False


def renew_lease(
    session: Session, study_name: str, target: str, holder: str, ttl_seconds: float
) -> bool:
    """Extend our lease to ``ttl_seconds`` from now.

    A lease that expired but was not taken by anyone else is still ours to renew.

    Args:
        session: An open session; commit it at once.
        study_name: The study.
        target: The leased target.
        holder: Who holds it.
        ttl_seconds: The new time to live, from now.

    Returns:
        ``True`` if renewed, ``False`` if the lease is gone or another holder took it over.

    Raises:
        ValueError: If ``ttl_seconds`` is not a positive number.
    """
    ttl = _check_ttl(ttl_seconds)
    now = database_now(session)
    result = session.execute(
        update(EvaluationLease)
        .where(
            EvaluationLease.study_name == study_name,
            EvaluationLease.target == target,
            EvaluationLease.holder == holder,
        )
        .values(expires_at=now + timedelta(seconds=ttl))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def release_lease(session: Session, study_name: str, target: str, holder: str) -> bool:
    """Give our lease back (delete it), so the next evaluator need not wait for its expiry.

    Args:
        session: An open session.
        study_name: The study.
        target: The leased target.
        holder: Who holds it; another holder's lease is left alone.

    Returns:
        ``True`` if our lease was deleted, ``False`` if we no longer held it.
    """
    result = session.execute(
        delete(EvaluationLease)
        .where(
            EvaluationLease.study_name == study_name,
            EvaluationLease.target == target,
            EvaluationLease.holder == holder,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def get_lease(session: Session, study_name: str, target: str) -> LeaseInfo | None:
    """The stored lease on ``target`` (live or expired), or ``None``."""
    row = session.get(EvaluationLease, (study_name, target))
    if row is None:
        return None
    return LeaseInfo(
        row.study_name, row.target, row.holder, _aware(row.acquired_at), _aware(row.expires_at)
    )


def list_leases(session: Session, study_name: str) -> list[LeaseInfo]:
    """A study's stored leases (live or expired), by target."""
    rows = session.execute(
        select(EvaluationLease)
        .where(EvaluationLease.study_name == study_name)
        .order_by(EvaluationLease.target)
    ).scalars()
    return [
        LeaseInfo(r.study_name, r.target, r.holder, _aware(r.acquired_at), _aware(r.expires_at))
        for r in rows
    ]


class HeldLease:
    """A lease held by :func:`hold_lease`; ``lost`` is set if a renewal found it taken over."""

    def __init__(self, study_name: str, target: str, holder: str) -> None:
        self.study_name = study_name
        self.target = target
        self.holder = holder
        self.lost = threading.Event()


def _renew_loop(
    engine: Engine, lease: HeldLease, ttl: float, interval: float, stop: threading.Event
) -> None:
    """Renew until stopped. A database error is logged and retried at the next tick (it must
    not end the thread quietly, or the live lease would expire under the work)."""
    while not stop.wait(interval):
        try:
            with session_scope(engine) as session:
                renewed = renew_lease(session, lease.study_name, lease.target, lease.holder, ttl)
        except StorageError as exc:
            log.warning("could not renew lease %s of %s: %s", lease.target, lease.study_name, exc)
            continue
        if not renewed:
            log.warning(
                "lease %s of study %s was taken over by another evaluator",
                lease.target,
                lease.study_name,
            )
            lease.lost.set()
            return


@contextmanager
def hold_lease(
    engine: Engine, study_name: str, target: str, holder: str, ttl_seconds: float
) -> Iterator[HeldLease | None]:
    """Take the lease on ``target`` and keep it while the block runs.

    Yields ``None`` (and runs nothing else) if another live holder has it. Otherwise yields a
    :class:`HeldLease`, renews it from a daemon thread every ``ttl_seconds / 3``, and releases
    it when the block ends, also on an error. A process killed inside the block leaves the
    lease to expire after ``ttl_seconds``.

    Args:
        engine: The storage engine.
        study_name: The study.
        target: What to lease.
        holder: Who takes it, from :func:`lease_holder_id`.
        ttl_seconds: Time to live of the lease between renewals.

    Yields:
        The held lease, or ``None`` if it is taken.
    """
    ttl = _check_ttl(ttl_seconds)
    with session_scope(engine) as session:
        acquired = acquire_lease(session, study_name, target, holder, ttl)
    if not acquired:
        yield None
        return
    lease = HeldLease(study_name, target, holder)
    stop = threading.Event()
    thread = threading.Thread(
        target=_renew_loop,
        args=(engine, lease, ttl, ttl / RENEWALS_PER_TTL, stop),
        name=f"lease-{target}",
        daemon=True,
    )
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join()
        try:
            with session_scope(engine) as session:
                release_lease(session, study_name, target, holder)
        except StorageError as exc:  # it expires by itself
            log.warning("could not release lease %s of %s: %s", target, study_name, exc)
