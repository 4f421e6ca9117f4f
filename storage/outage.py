"""Riding out a database outage: retry with backoff, for at most a patience per outage.

A PostgreSQL restart closes every pooled connection and refuses new ones for a few seconds.
``pool_pre_ping`` replaces a dead pooled connection before use, but a call made while the
server is down still fails. :class:`OutageGuard` runs a call again with growing pauses while
the failure is one of the connection (:func:`is_disconnect`), and gives up with
:class:`DatabaseUnavailable` once the database has been unreachable for ``patience`` seconds.

The outage is measured from its first failed call to any call through the same guard, and
ends at the first call that succeeds; once the patience is spent, every call fails at once
until one succeeds. Several threads may share a guard (the worker's main thread and Optuna's
heartbeat thread).

A retried write whose COMMIT reached the server just before the connection broke runs twice.
That window (between the server's commit and its reply) is small beside an outage's seconds;
our writes that matter under it (an artifact record, the budget's conditional updates) are
upserts or checked by the invariants.

A table or column of ours missing is no outage (SQLite reports it as an ``OperationalError``
too): it means a database older than the code, and :func:`older_schema_message` turns it into
the upgrade hint for every command.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from storage import migrations
from storage.engine import (
    _first_line,
    _newer_schema_hint,
    _older_schema_hint,
    create_engine,
    current_revision,
)
from storage.errors import StorageError
from storage.urls import masked_url

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_PAUSE = 0.5
"""Seconds before the first retry; each pause doubles up to :data:`MAX_PAUSE`."""
MAX_PAUSE = 4.0
"""Longest pause between retries: a restarted server is used within seconds of its return."""


class DatabaseUnavailable(StorageError):
    """The database stayed unreachable for longer than the guard's patience."""


def unreachable_message(exc: BaseException, url: str) -> str:
    """One line for a database that cannot be reached: the URL with its password masked and
    the driver's first line (the driver's hints and SQLAlchemy's background link dropped).

    Our own :class:`DatabaseUnavailable` already says how long the outage lasted: kept as is.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DatabaseUnavailable):
            return str(current)
        if isinstance(current, DBAPIError):
            return f"cannot reach the database at {masked_url(url)}: {_first_line(current)}"
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return f"cannot reach the database at {masked_url(url)}: {_first_line(exc)}"


MISSING_OBJECT_SQLSTATES = frozenset({"42P01", "42703"})
"""PostgreSQL's ``undefined_table`` and ``undefined_column``."""
SQLITE_MISSING_OBJECT = ("no such table", "no such column", "has no column named")
"""What SQLite's errors say of a missing table or column."""


def missing_table_or_column(exc: BaseException) -> BaseException | None:
    """The driver's error in ``exc``'s chain saying a table or column does not exist, if any.

    Args:
        exc: The error, possibly wrapping SQLAlchemy's in its ``__cause__`` chain (our
            :class:`StorageError`, Optuna's ``StorageInternalError``).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        driver = getattr(current, "orig", None) or current
        if getattr(driver, "sqlstate", None) in MISSING_OBJECT_SQLSTATES:
            return driver
        if type(driver).__module__ == "sqlite3" and any(
            text in str(driver) for text in SQLITE_MISSING_OBJECT
        ):
            return driver
        current = current.__cause__ or current.__context__
    return None


def older_schema_message(exc: BaseException, url: str) -> str | None:
    """One line for a command that met a table or column of ours missing: the upgrade hint.

    Commands that read or write without :func:`init_schema` (``hpo study status``,
    ``list``, ``budget``, ``report``, ...) meet an older database as a raw ``relation
    "study_records" does not exist``. When ``exc`` is such an error and the database's
    revision is not this code's, this gives the line the workers give at start (``hpo db
    upgrade``), the driver's line after it.

    Args:
        exc: The error a command raised.
        url: The storage URL the command used.

    Returns:
        The line, or None when ``exc`` is no missing table or column, or the database is at
        this code's revision (the missing object is not ours to upgrade).
    """
    missing = missing_table_or_column(exc)
    if missing is None:
        return None
    try:
        revision = current_revision(create_engine(url))
    except StorageError:
        return None
    head = migrations.head_revision()
    if revision == head:
        return None
    known = migrations.known_revisions()
    if revision is not None and revision not in known:
        hint = _newer_schema_hint(url, revision, known)
    else:
        hint = _older_schema_hint(url, revision, head)
    return f"{hint} ({_first_line(missing)})"


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the database cannot be reached.

    Connection refused, a connection closed by a restarting server, a server starting up or
    shutting down, and SQLite's busy errors are all SQLAlchemy ``OperationalError`` or
    ``InterfaceError``, or a ``DBAPIError`` that invalidated its connection. Errors of the
    statement itself (a constraint, a missing table or column, on SQLite an
    ``OperationalError`` too) are not.

    Args:
        exc: The error, possibly wrapping the SQLAlchemy one in its ``__cause__`` chain
            (Optuna's ``StorageInternalError``, our :class:`StorageError`).
    """
    if missing_table_or_column(exc) is not None:  # an older schema: waiting will not help
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DatabaseUnavailable):
            return True
        if isinstance(current, OperationalError | InterfaceError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _driver_error(exc: BaseException) -> BaseException:
    """The SQLAlchemy error in ``exc``'s cause chain (its message names the server), or
    ``exc``."""
    current: BaseException | None = exc
    for _ in range(10):
        if current is None:
            break
        if isinstance(current, DBAPIError):
            return current
        current = current.__cause__ or current.__context__
    return exc


class OutageGuard:
    """Runs database calls again while the database is unreachable, up to ``patience`` s.

    Args:
        url: The database URL, named (password masked) in messages.
        patience: Seconds an outage may last before calls give up; the worker uses its
            heartbeat grace period, after which its trials count as lost anyway.
        first_pause: Seconds before the first retry.
        max_pause: Longest pause between retries.
        clock: Monotonic clock (tests pass a fake one).
        sleep: How to pause (tests pass a fake one).
        waiter: Who waits that long and why, for the message past the patience.
        subject: What is waited for, as messages name it (default: the database at ``url``).

    Raises:
        ValueError: If ``patience`` or a pause is not positive.
    """

    unavailable_error: type[StorageError] = DatabaseUnavailable
    """What :meth:`unavailable` raises (a guard of another service names its own)."""

    def __init__(
        self,
        url: str,
        patience: float,
        *,
        first_pause: float = FIRST_PAUSE,
        max_pause: float = MAX_PAUSE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        waiter: str = "a worker waits (its heartbeat grace period)",
        subject: str | None = None,
    ) -> None:
        for name, value in (
            ("patience", patience),
            ("first_pause", first_pause),
            ("max_pause", max_pause),
        ):
            if not value > 0:
                raise ValueError(f"invalid {name} {value!r}: use a positive number of seconds")
        self.subject = subject or f"database {masked_url(url)}"
        """What is waited for, as messages name it."""
        self.patience = float(patience)
        self.first_pause = first_pause
        self.max_pause = max_pause
        self._clock = clock
        self._sleep = sleep
        self.waiter = waiter
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_error = ""

    @property
    def down_for(self) -> float | None:
        """Seconds since the current outage began, or None while the database answers."""
        with self._lock:
            return None if self._down_since is None else self._clock() - self._down_since

    @property
    def gave_up(self) -> bool:
        """Whether the current outage has outlasted the patience."""
        down = self.down_for
        return down is not None and down >= self.patience

    def unavailable(self) -> StorageError:
        """The one-line error for an outage past the patience (to raise from another error)."""
        down = self.down_for or 0.0
        return self.unavailable_error(
            f"{self.subject} unreachable for {down:.0f} s, longer than the "
            f"{self.patience:.0f} s {self.waiter}: "
            f"{self._last_error or 'no answer'}"
        )

    def is_fault(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the service cannot be reached (then the call is run again)."""
        return is_disconnect(exc)

    def cause(self, exc: BaseException) -> str:
        """The failure's one line, as messages quote it."""
        return _first_line(_driver_error(exc))

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Return ``fn(*args, **kwargs)``, run again while the database is unreachable.

        Raises:
            DatabaseUnavailable: The outage outlasted the patience (chained to the last error;
                :attr:`unavailable_error` in a guard of another service).
            Exception: Whatever ``fn`` raises that is not a lost connection
                (:meth:`is_fault`), at once.
        """
        pause = self.first_pause
        while True:
            answered, value = self._try(fn, args, kwargs)
            if answered:
                return cast(T, value)
            self._sleep(min(pause, self.patience - value))
            pause = min(2 * pause, self.max_pause)

    def attempt(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T | None:
        """``fn(*args, **kwargs)`` once, for a caller that has a loop of its own and must not
        block in ours (``hpo launch`` watches its workers between polls): the outage is
        measured and logged as :meth:`call` does, without a pause.

        Returns:
            ``fn``'s result, or None while the service is unreachable within the patience.

        Raises:
            DatabaseUnavailable: The outage outlasted the patience (:attr:`unavailable_error`
                in a guard of another service); each attempt raises it at once until one
                is answered.
            Exception: Whatever ``fn`` raises that is not a lost connection.
        """
        answered, value = self._try(fn, args, kwargs)
        return cast(T, value) if answered else None

    def _try(
        self, fn: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
    ) -> tuple[bool, Any]:
        """One call of ``fn``: ``(True, its result)``, or ``(False, seconds the service has
        been unreachable)`` when the connection was lost within the patience."""
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if not self.is_fault(exc):
                raise
            down = self._failed(exc)
            if down >= self.patience:
                raise self.unavailable() from exc
            return False, down
        self._answered()
        return True, result

    def _failed(self, exc: BaseException) -> float:
        with self._lock:
            now = self._clock()
            self._last_error = self.cause(exc)
            if self._down_since is None:
                self._down_since = now
                log.warning(
                    "%s unreachable (%s); retrying for up to %.0f s",
                    self.subject,
                    self._last_error,
                    self.patience,
                )
            return now - self._down_since

    def _answered(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            log.warning(
                "%s answers again after %.1f s",
                self.subject,
                self._clock() - self._down_since,
            )
            self._down_since = None
