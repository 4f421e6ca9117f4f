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

import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.artifacts import (
    OutputLayout,
    _file_sha256,
    atomic_directory,
    directory_sha256,
    record_artifact,
)
from storage.engine import session_scope

CACHE_FOLDER = ("cache", "artifacts")
"""Where downloads land under a consumer's output root, one folder (or file) per sha256."""


class ArtifactUnavailable(ValueError):
    """An artifact is neither intact under this output root nor in the shared store."""


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
    _download(layout.store, store_id(sha256, directory=directory), cached, directory)
    if not _intact(cached, sha256, directory):
        shutil.rmtree(cached, ignore_errors=True) if directory else cached.unlink(missing_ok=True)
        raise ArtifactUnavailable(f"{relpath}: the shared store's copy is not sha256 {sha256}")
    return cached


def _download(store: Any, artifact_id: str, target: Path, directory: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        body = store.open_reader(artifact_id)
    except Exception as exc:  # ArtifactNotFound, or the store's own client errors
        raise ArtifactUnavailable(
            f"artifact {artifact_id} is not in the shared store: {type(exc).__name__}: {exc}"
        ) from exc
    with body, tempfile.TemporaryFile() as packed:
        shutil.copyfileobj(body, packed)
        packed.seek(0)
        if not directory:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(packed, out)
            os.replace(tmp, target)
            return
        with atomic_directory(target) as tmp_dir, tarfile.open(fileobj=packed) as tar:
            tar.extractall(tmp_dir, filter="data")  # no links out, no absolute names


__all__ = [
    "CACHE_FOLDER",
    "ArtifactUnavailable",
    "Published",
    "fetch_artifact",
    "publish_and_record",
    "publish_artifact",
    "relative",
    "store_id",
]
