"""The shared artifact store of a deployment: where adapters and results go so that every
machine reads them (:mod:`storage.shared`).

Configured once per machine by ``HPO_ARTIFACTS``:

- ``file:///shared/folder``: Optuna's ``FileSystemArtifactStore`` on a folder every machine
  mounts (NFS, a shared volume), at any path on each; an object is written under a temporary
  name and renamed into place (:class:`AtomicFileStore`);
- ``s3://bucket/prefix``: Optuna's ``Boto3ArtifactStore`` on S3 or an S3-compatible server
  (MinIO, SeaweedFS), with boto3's usual settings (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for a server that is not AWS,
  ``AWS_DEFAULT_REGION``); needs ``pip install 'persona-hpo[s3]'`` (boto3).

Without it, one machine works from its output root, as before.

This module is the one place that reads ``HPO_ARTIFACTS``: a value that cannot name a store
(a scheme other than ``file`` or ``s3``, a folder that does not exist) and a store that
refuses us at start (credentials, a missing bucket, a folder we cannot write) raise
:class:`ArtifactStoreError`, which the command line reports as bad input (exit 2). A store
that cannot be reached at start raises :class:`storage.StoreUnavailable` (exit 1). Every
process that uses the store opens it through :func:`output_layout`, which probes it (writes,
reads back and removes a small object) before the process does any work, and guards it so
that a later outage is waited out for the process's patience (:mod:`storage.store_faults`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import storage
from storage.store_faults import GuardedStore, StoreGuard, StoreUnavailable, store_cause

log = logging.getLogger(__name__)

ARTIFACTS_ENV = "HPO_ARTIFACTS"

S3_CONNECT_TIMEOUT = 10
"""Seconds boto3 waits for a connection (its default is 60, times its 5 attempts): a store
that does not answer is found out within a minute at start."""

REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "InvalidToken",
        "NoSuchBucket",
        "SignatureDoesNotMatch",
    }
)
"""S3 error codes that say the setting is wrong (credentials, bucket), not the server down."""

_BAD_FOLDER_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EROFS}
)


class ArtifactStoreError(ValueError):
    """``HPO_ARTIFACTS`` names a store that cannot be used (bad input: exit 2)."""


class PrefixedStore:
    """An artifact store whose ids all live under ``prefix/`` of another store (an S3 key
    prefix: ``s3://bucket/prefix``)."""

    def __init__(self, store: Any, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def _id(self, artifact_id: str) -> str:
        return f"{self.prefix}/{artifact_id}" if self.prefix else artifact_id

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self.store.open_reader(self._id(artifact_id))  # type: ignore[no-any-return]

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.store.write(self._id(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self._id(artifact_id))


def atomic_file_store(folder: Path) -> Any:
    """:class:`AtomicFileStore` on ``folder`` (Optuna imported here, on first use)."""
    from optuna.artifacts import FileSystemArtifactStore

    class AtomicFileStore(FileSystemArtifactStore):  # type: ignore[misc]
        """Optuna's ``FileSystemArtifactStore``, whose ``write`` writes in place: a writer
        killed midway leaves a truncated object under its final id. Here an object is
        written under ``.tmp-<id>-<random>``, flushed to disk, then renamed to its id, so the
        id names a whole object or none. A reader finds the folder gone (an unmounted share)
        as an ``OSError``, a fault of the store, not as a missing object."""

        def __init__(self, base: Path) -> None:
            super().__init__(base)
            self.folder = base

        def open_reader(self, artifact_id: str) -> BinaryIO:
            if not self.folder.is_dir():
                raise FileNotFoundError(errno.ENOENT, "store folder is gone", str(self.folder))
            return super().open_reader(artifact_id)  # type: ignore[no-any-return]

        def write(self, artifact_id: str, content_body: BinaryIO) -> None:
            name = Path(artifact_id).name
            if name in ("", ".", ".."):
                raise ValueError(f"invalid artifact id {artifact_id!r}")
            final = self.folder / artifact_id
            temporary_id = str(Path(artifact_id).parent / f".tmp-{name}-{uuid.uuid4().hex}")
            path = self.folder / temporary_id
            try:
                super().write(temporary_id, content_body)  # checks the id stays in the folder
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(path, final)
            except BaseException:
                path.unlink(missing_ok=True)
                raise

    return AtomicFileStore(folder)


def open_artifact_store(url: str) -> Any:
    """The Optuna artifact store that ``url`` names (unguarded, not probed).

    Raises:
        ArtifactStoreError: An unknown scheme, a folder that does not exist, or S3 without
            boto3 installed; the message names ``HPO_ARTIFACTS`` and the value.
    """
    parts = urlsplit(url)
    where = f"{ARTIFACTS_ENV}={url!r}"
    if parts.scheme == "file":
        folder = Path(parts.path)
        if parts.netloc or not folder.is_absolute():
            raise ArtifactStoreError(f"{where}: use file:///absolute/folder")
        if not folder.is_dir():
            raise ArtifactStoreError(f"{where}: folder {str(folder)!r} does not exist")
        return atomic_file_store(folder)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ArtifactStoreError(f"{where}: use s3://bucket or s3://bucket/prefix")
        try:
            import boto3
            from botocore.config import Config
            from optuna.artifacts import Boto3ArtifactStore
        except ImportError as exc:
            raise ArtifactStoreError(
                f"{where}: boto3 is not installed (pip install 'persona-hpo[s3]')"
            ) from exc
        # botocore says at INFO, in every process, where it found the credentials
        logging.getLogger("botocore.credentials").setLevel(logging.WARNING)
        # a session of its own: boto3's default one keeps the credentials it first read
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            config=Config(connect_timeout=S3_CONNECT_TIMEOUT),
        )
        return PrefixedStore(Boto3ArtifactStore(parts.netloc, client=client), parts.path)
    raise ArtifactStoreError(f"{where}: expected file:///folder or s3://bucket/prefix")


def store_endpoint(store: Any) -> str:
    """Where the store lies, for messages: an S3 client's endpoint (without any user or
    password in it) or a folder."""
    inner = store.store if isinstance(store, PrefixedStore | GuardedStore) else store
    if isinstance(inner, PrefixedStore | GuardedStore):
        return store_endpoint(inner)
    client = getattr(inner, "client", None)
    if client is not None:
        endpoint = urlsplit(str(client.meta.endpoint_url))
        netloc = (endpoint.hostname or "") + (f":{endpoint.port}" if endpoint.port else "")
        return endpoint._replace(netloc=netloc).geturl()  # no user or password
    return str(getattr(inner, "folder", "?"))


def describe_store(url: str, store: Any) -> str:
    """``HPO_ARTIFACTS='...' (endpoint ...)``: how every message names the store."""
    return f"{ARTIFACTS_ENV}={url!r} (endpoint {store_endpoint(store)})"


def _refused(exc: BaseException) -> bool:
    """Whether the store refused us (a bad setting) rather than could not be reached."""
    current: BaseException | None = exc
    for _ in range(20):
        if current is None:
            return False
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code in REFUSED_CODES or status in (400, 401, 403, 404)
        name = type(current).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return True
        if isinstance(current, OSError) and current.errno in _BAD_FOLDER_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def probe_store(store: Any, url: str) -> None:
    """Write a small object, read it back and remove it: the store works for us.

    Raises:
        ArtifactStoreError: The store refused us (credentials, a missing bucket, a folder we
            cannot write): bad input.
        storage.StoreUnavailable: It could not be reached, or gave back other bytes.
    """
    where = describe_store(url, store)
    probe_id = f".hpo-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    content = f"hpo store probe {probe_id}\n".encode()
    try:
        store.write(probe_id, io.BytesIO(content))
        with contextlib.closing(store.open_reader(probe_id)) as body:
            back = body.read()
    except Exception as exc:
        cause = store_cause(exc)
        if _refused(exc):
            raise ArtifactStoreError(f"{where} refuses us: {cause}") from exc
        raise StoreUnavailable(f"{where} cannot be reached: {cause}") from exc
    if back != content:
        raise StoreUnavailable(f"{where} gave back other bytes than it was given")
    try:  # nothing of ours removes objects: a store that forbids it still serves us
        store.remove(probe_id)
    except Exception as exc:
        log.warning("%s: the probe object %s stays: %s", where, probe_id, store_cause(exc))


def configured_store(
    patience: float | None = None, *, waiter: str = "a worker waits (its heartbeat grace period)"
) -> Any:
    """The store ``HPO_ARTIFACTS`` names, guarded (an outage is waited out for ``patience``
    seconds, the grace period by default), or None where it is unset. Not probed."""
    url = os.environ.get(ARTIFACTS_ENV)
    if not url:
        return None
    store = open_artifact_store(url)
    if patience is None:
        from hpo.study.creation import GRACE_PERIOD

        patience = GRACE_PERIOD
    guard = StoreGuard(url, patience, waiter=waiter, subject=describe_store(url, store))
    return GuardedStore(store, guard)


def publish_file(
    engine: Any, layout: storage.OutputLayout, kind: str, study_name: str, path: Path
) -> storage.Published:
    """Upload a finished result file (results JSON, report HTML or PNG) to the shared store,
    when there is one, and record it by kind and study with its sha256 and its place under
    the output root, so that any machine can fetch it."""
    return storage.publish_and_record(
        engine, layout, path, kind=kind, study_name=study_name, trial_number=None
    )


def store_outage(layout: storage.OutputLayout) -> storage.StorageError | None:
    """The error to stop with when the layout's store has been unreachable for longer than
    its patience (the work that needed it has just failed), else None."""
    store = layout.store
    if isinstance(store, GuardedStore) and store.guard.gave_up:
        return store.guard.unavailable()
    return None


def output_layout(
    output_root: str | Path,
    *,
    patience: float | None = None,
    waiter: str = "a worker waits (its heartbeat grace period)",
) -> storage.OutputLayout:
    """The output root's layout, with the configured shared store, at a process's start.

    The store is probed (:func:`probe_store`) and guarded (an outage later is waited out for
    ``patience`` seconds, the grace period by default), and what killed processes left is
    removed: in the root's download cache (:func:`storage.sweep_download_cache`), and the
    temporary folders of ``models/`` and ``results/`` that no live process holds
    (:func:`storage.sweep_temp_folders`: MoE and persona adapters, baselines, reports).

    Raises:
        ArtifactStoreError: ``HPO_ARTIFACTS`` is wrong or the store refuses us (bad input).
        storage.StoreUnavailable: The store cannot be reached.
    """
    store = configured_store(patience, waiter=waiter)
    if store is not None:
        probe_store(store.store, os.environ[ARTIFACTS_ENV])
    layout = storage.OutputLayout(Path(output_root).resolve(), store=store)
    for path in storage.sweep_download_cache(layout):
        log.warning("removed %s, left by a download that was killed", path)
    for path in storage.sweep_temp_folders(layout):
        log.warning("removed %s, left by a process that was killed while it wrote", path)
    return layout


__all__ = [
    "ARTIFACTS_ENV",
    "REFUSED_CODES",
    "S3_CONNECT_TIMEOUT",
    "ArtifactStoreError",
    "PrefixedStore",
    "atomic_file_store",
    "configured_store",
    "describe_store",
    "open_artifact_store",
    "output_layout",
    "probe_store",
    "publish_file",
    "store_endpoint",
    "store_outage",
]
