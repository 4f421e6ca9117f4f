"""Riding out an artifact store's outage, as :mod:`storage.outage` rides out the database's.

A shared store (S3, a mounted folder) goes away as a database does: a restarting server, a
dropped connection, an NFS mount that hangs. :class:`GuardedStore` wraps a store (Optuna's
``ArtifactStore`` protocol) so that each of its calls (a whole upload; a download, its body
read to the end; a removal) runs again with growing pauses while the store cannot be reached
(:func:`is_store_fault`), for at most a patience per outage (the database's grace period in a
worker), then fails with :class:`StoreUnavailable`. That error is outside a trial's parameters:
the worker re-queues the trial with them (:func:`hpo.workers.objective.fault_outside_params`).

We do not use Optuna's ``optuna.artifacts.Backoff``: it counts attempts (ten, about 51 s of
pauses) rather than the patience that the heartbeat's grace period sets; it retries only the
opening of a reader, so a connection dropped in the middle of a download is not retried; and
it logs a traceback for every retry.

Every upload of ours is content-addressed (:func:`storage.shared.store_id`), so running one
again writes the same object.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, BinaryIO, cast

from storage.errors import StorageError
from storage.outage import OutageGuard

STORE_CLIENT_MODULES = ("botocore", "boto3", "s3transfer", "urllib3")
"""Packages whose errors say an S3 store could not be used (connection, timeout, refusal)."""

SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""Environment variables whose values never appear in a message of ours."""


class StoreUnavailable(StorageError):
    """The artifact store stayed unreachable for longer than the guard's patience (or, at
    start, could not be reached at all): outside any trial's parameters."""


def without_secrets(text: str) -> str:
    """``text`` with the value of every :data:`SECRET_ENV` variable masked."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen) and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_store_fault(exc: BaseException) -> bool:
    """Whether ``exc`` says the store could not be used, rather than that an object is
    missing (``ArtifactNotFound``) or an id is wrong (``ValueError``).

    An ``OSError`` (a connection refused or reset, a timeout, a mounted folder's I/O error)
    and the errors of boto3 and the libraries under it (:data:`STORE_CLIENT_MODULES`) are
    faults, whether raised themselves or as the cause of another error.
    """
    for error in _chain(exc):
        if any(c.__name__ == "ArtifactNotFound" for c in type(error).__mro__):
            return False
        if isinstance(error, OSError):
            return True
        if type(error).__module__.split(".")[0] in STORE_CLIENT_MODULES:
            return True
    return False


def store_cause(exc: BaseException) -> str:
    """One line for a store's error: its type and first line, secrets masked."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return without_secrets(f"{type(exc).__name__}: {line}" if line else type(exc).__name__)


class StoreGuard(OutageGuard):
    """An :class:`~storage.outage.OutageGuard` for an artifact store: it runs a call again
    while :func:`is_store_fault` says the store cannot be reached, and past its patience
    raises :class:`StoreUnavailable`. ``subject`` names the store (``HPO_ARTIFACTS`` and its
    endpoint); the ``url`` argument is unused."""

    unavailable_error = StoreUnavailable

    def is_fault(self, exc: BaseException) -> bool:
        """Whether the store could not be used (:func:`is_store_fault`)."""
        return is_store_fault(exc)

    def cause(self, exc: BaseException) -> str:
        """The store's error in one line, secrets masked (:func:`store_cause`)."""
        return store_cause(exc)


class GuardedStore:
    """An artifact store whose calls wait out an outage of the store under it.

    Args:
        store: The store (Optuna's ``ArtifactStore`` protocol).
        guard: How long to wait, and what to call the store in messages.
    """

    def __init__(self, store: Any, guard: StoreGuard) -> None:
        self.store = store
        self.guard = guard

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """The object's bytes, read to the end inside the retried call (a connection that
        drops in the middle of the body is a fault like one refused at once)."""
        return self.guard.call(self._read, artifact_id)

    def _read(self, artifact_id: str) -> BinaryIO:
        copy = tempfile.TemporaryFile()  # noqa: SIM115 (returned open: the caller closes it)
        try:
            with self.store.open_reader(artifact_id) as body:
                shutil.copyfileobj(body, copy)
            copy.seek(0)
        except BaseException:
            copy.close()
            raise
        return cast(BinaryIO, copy)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Upload the body, from its start again on every try."""
        start = content_body.tell()

        def upload() -> None:
            content_body.seek(start)
            self.store.write(artifact_id, content_body)

        self.guard.call(upload)

    def remove(self, artifact_id: str) -> None:
        """Remove the object."""
        self.guard.call(self.store.remove, artifact_id)


__all__ = [
    "SECRET_ENV",
    "STORE_CLIENT_MODULES",
    "GuardedStore",
    "StoreGuard",
    "StoreUnavailable",
    "is_store_fault",
    "store_cause",
    "without_secrets",
]
