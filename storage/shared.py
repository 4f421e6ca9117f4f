"""Artifacts every machine can read: adapters and result files through a shared artifact store.

Workers, evaluators and per-persona runners on many machines write adapters that others read.
The database records where an artifact lies *relative to the output root* and its sha256,
never a machine-local path. A producer publishes a directory or file
(:func:`publish_artifact`): it is hashed and, where a shared store is configured
(``OutputLayout.store``), uploaded under an id made of its sha256. A consumer fetches it
(:func:`fetch_artifact`): the copy under its own output root when that is intact (one
machine, or a folder every machine mounts), else a download from the store into a local
cache keyed by sha256 (``<output root>/cache/artifacts/<sha256>``), checked against the
sha256 before it is used.

The store is any object with Optuna's ``ArtifactStore`` protocol (``open_reader(id)``,
``write(id, body)``, ``remove(id)``): ``optuna.artifacts.FileSystemArtifactStore`` on a
shared folder, ``Boto3ArtifactStore`` on S3-compatible storage, built by
:func:`hpo.artifacts.open_artifact_store` from ``HPO_ARTIFACTS``. Ids are content-addressed
(``<sha256>.tar`` for a directory), not Optuna's per-trial random ids, since the same adapter
is found by its recorded sha256 from any process, trial or not (baselines, per-persona
adapters, the promoted copy). Directories travel as uncompressed tar files (adapters are
dense float tensors that barely compress).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.artifacts import (
    OutputLayout,
    _file_sha256,
    directory_sha256,
    record_artifact,
)
from storage.atomic import atomic_directory
from storage.engine import session_scope
from storage.errors import StorageError
from storage.store_faults import is_store_fault

CACHE_FOLDER = ("cache", "artifacts")
"""Where downloads land under a consumer's output root, one folder (or file) per sha256."""


CACHE_LOCK = ".lock"
"""The cache's lock file: held shared by every download, exclusively by the sweep."""


class ArtifactUnavailable(ValueError):
    """An artifact is neither intact under this output root nor in the shared store."""


class BrokenArtifact(ArtifactUnavailable):
    """The shared store's object of an artifact cannot be used: not a tar, a truncated or
    hostile one (a path out of the folder, a link), or content without the recorded sha256.

    Attributes:
        artifact_id: The object's id in the store.
        reason: What is wrong with it, in a few words that name no path of this machine.
    """

    def __init__(self, message: str, artifact_id: str, reason: str) -> None:
        super().__init__(message)
        self.artifact_id = artifact_id
        self.reason = reason


@dataclass(frozen=True)
class Published:
    """What the database records of an artifact: its place under the output root, its
    sha256 and size (of the directory's files, as :func:`storage.directory_sha256` counts)."""

    relpath: str
    sha256: str
    size_bytes: int


def relative(layout: OutputLayout, path: Path) -> str:
    """``path`` relative to the output root (POSIX form), the form the database records.

    Raises:
        ValueError: ``path`` is not under the output root.
    """
    return Path(path).resolve().relative_to(layout.root.resolve()).as_posix()


def under_root(root: Path | None, path: Path | str) -> str | None:
    """How a published file (a results JSON) names ``path``: relative to the output root
    ``root`` (POSIX form), so that it names no folder of the machine that wrote it; None for a
    path outside the root; without a root, the path as it is."""
    if root is None:
        return str(path)
    resolved, base = Path(path).resolve(), Path(root).resolve()
    return resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else None


def store_id(sha256: str, *, directory: bool) -> str:
    """The artifact's id in the shared store: its content hash."""
    return f"{sha256}.tar" if directory else f"{sha256}.file"


def publish_artifact(layout: OutputLayout, path: Path) -> Published:
    """Hash a finished directory or file under the output root, and upload it to the shared
    store when one is configured. Call it after the atomic write, before recording it."""
    path = Path(path)
    directory = path.is_dir()
    digest, size = directory_sha256(path) if directory else _file_sha256(path)
    if layout.store is not None:
        _upload(layout.store, path, store_id(digest, directory=directory), directory)
    return Published(relative(layout, path), digest, size)


def publish_and_record(
    engine: Any,
    layout: OutputLayout,
    path: Path,
    *,
    kind: str,
    study_name: str | None,
    trial_number: int | None = None,
    persona_id: int | None = None,
) -> Published:
    """:func:`publish_artifact`, then record it (an upsert by kind, study and trial) with
    its place under the output root and its sha256: what every producer does when its
    adapter or result file is finished. Running it twice records one artifact."""
    published = publish_artifact(layout, path)
    with session_scope(engine) as session:
        record_artifact(
            session,
            kind=kind,
            path=Path(published.relpath),
            sha256=published.sha256,
            size_bytes=published.size_bytes,
            study_name=study_name,
            trial_number=trial_number,
            persona_id=persona_id,
        )
    return published


def _upload(store: Any, path: Path, artifact_id: str, directory: bool) -> None:
    if not directory:
        with path.open("rb") as body:
            store.write(artifact_id, body)
        return
    with tempfile.TemporaryFile() as packed:
        with tarfile.open(fileobj=packed, mode="w") as tar:
            for item in sorted(path.rglob("*")):
                if item.is_file():
                    tar.add(item, arcname=item.relative_to(path).as_posix(), recursive=False)
        packed.seek(0)
        store.write(artifact_id, packed)


def _intact(path: Path, sha256: str, directory: bool) -> bool:
    if directory:
        return path.is_dir() and directory_sha256(path)[0] == sha256
    return path.is_file() and _file_sha256(path)[0] == sha256


def fetch_artifact(
    layout: OutputLayout, relpath: str | Path, sha256: str, *, directory: bool = True
) -> Path:
    """A local path of the recorded artifact, with the recorded sha256.

    The output root's own copy when intact; else the local cache's; else a download from the
    shared store into the cache (atomic, then checked). An absolute ``relpath`` (recorded by
    an older version) is read where it is, or fetched from the store by its sha256.

    Raises:
        ArtifactUnavailable: Not intact here and not in the store (or no store configured):
            the message names the artifact and what to set.
        BrokenArtifact: The store's object cannot be unpacked or lacks the sha256.
        StorageError: The store could not be reached
            (:class:`~storage.store_faults.StoreUnavailable`).
    """
    local = layout.root / relpath  # an absolute relpath stays itself
    if _intact(local, sha256, directory):
        return local
    cached = layout.root.joinpath(*CACHE_FOLDER, sha256)
    if _intact(cached, sha256, directory):
        return cached
    if layout.store is None:
        state = "changed" if local.exists() else "missing"
        raise ArtifactUnavailable(
            f"{relpath} is {state} under {layout.root} (sha256 {sha256[:12]}) and no shared "
            "artifact store is configured: set HPO_ARTIFACTS (file:///shared/folder or "
            "s3://bucket/prefix) on every machine, or mount one output root everywhere"
        )
    artifact_id = store_id(sha256, directory=directory)
    with _cache_lock(cached.parent, exclusive=False):
        _download(layout.store, artifact_id, cached, directory)
        if not _intact(cached, sha256, directory):
            _remove(cached)
            raise BrokenArtifact(
                f"{relpath}: the shared store's object {artifact_id} does not hold sha256 "
                f"{sha256[:12]}",
                artifact_id,
                "content without the recorded sha256",
            )
    return cached


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _cache_lock(folder: Path, *, exclusive: bool) -> Iterator[bool]:
    """Hold the download cache's lock: shared for a download, exclusive (without waiting)
    for the sweep. Yields whether it is held (an exclusive one may be refused)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / CACHE_LOCK).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sweep_download_cache(layout: OutputLayout) -> list[Path]:
    """Remove the temporary folders and files that killed downloads left in the cache.

    Every download holds the cache's lock shared, so when the sweep gets it exclusively no
    live process that shares this folder is downloading and every ``.tmp-*``
    and ``.old-*`` entry is a leftover; when a download runs, the sweep removes nothing (the
    next process's start sweeps).

    Returns:
        What was removed.
    """
    folder = layout.root.joinpath(*CACHE_FOLDER)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    with _cache_lock(folder, exclusive=True) as held:
        if held:
            for path in sorted(folder.iterdir()):
                if path.name.startswith((".tmp-", ".old-")):
                    _remove(path)
                    removed.append(path)
    return removed


def _download(store: Any, artifact_id: str, target: Path, directory: bool) -> None:
    """Download and unpack one object into ``target``, atomically.

    Raises:
        ArtifactUnavailable: The object is not in the store.
        BrokenArtifact: The object is not a tar, a truncated or hostile one.
        StorageError: The store could not be reached (a guarded store's
            :class:`~storage.store_faults.StoreUnavailable`), or the store's own error
            when it is not guarded.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        body = store.open_reader(artifact_id)
    except StorageError:
        raise
    except Exception as exc:
        if is_store_fault(exc):
            raise
        raise ArtifactUnavailable(  # ArtifactNotFound
            f"artifact {artifact_id} is not in the shared store: {type(exc).__name__}: {exc}"
        ) from exc
    with body, tempfile.TemporaryFile() as packed:
        shutil.copyfileobj(body, packed)
        packed.seek(0)
        if not directory:
            fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(packed, out)
            os.replace(tmp, target)
            return
        try:
            # mode "r:": a plain tar, as we write them (no guessing among compressions)
            with (
                atomic_directory(target) as tmp_dir,
                tarfile.open(fileobj=packed, mode="r:") as tar,
            ):
                tar.extractall(tmp_dir, filter="data")  # no links out, no absolute names
        except (tarfile.TarError, EOFError) as exc:
            text = " ".join(str(exc).split()) or "no reason given"
            # a filter's refusal names this machine's folder: the type says enough
            reason = type(exc).__name__ + (
                "" if isinstance(exc, tarfile.FilterError) else f": {text}"
            )
            raise BrokenArtifact(
                f"the shared store's object {artifact_id} is not a usable tar: "
                f"{type(exc).__name__}: {text}",
                artifact_id,
                f"not a usable tar: {reason}",
            ) from exc


__all__ = [
    "CACHE_FOLDER",
    "CACHE_LOCK",
    "ArtifactUnavailable",
    "BrokenArtifact",
    "Published",
    "fetch_artifact",
    "publish_and_record",
    "publish_artifact",
    "relative",
    "store_id",
    "sweep_download_cache",
    "under_root",
]
