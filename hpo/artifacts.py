"""The shared artifact store of a deployment: where adapters and results go so that every
machine reads them (:mod:`storage.shared`).

Configured once per machine by ``HPO_ARTIFACTS``:

- ``file:///shared/folder``: Optuna's ``FileSystemArtifactStore`` on a folder every machine
  mounts (NFS, a shared volume), at any path on each;
- ``s3://bucket/prefix``: Optuna's ``Boto3ArtifactStore`` on S3 or an S3-compatible server
  (MinIO, SeaweedFS), with boto3's usual settings (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for a server that is not AWS,
  ``AWS_DEFAULT_REGION``); needs ``pip install 'persona-hpo[s3]'`` (boto3).

Without it, one machine works from its output root, as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import storage

ARTIFACTS_ENV = "HPO_ARTIFACTS"


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


def open_artifact_store(url: str) -> Any:
    """The Optuna artifact store that ``url`` names.

    Raises:
        ArtifactStoreError: An unknown scheme, a folder that does not exist, or S3 without
            boto3 installed; the message names ``HPO_ARTIFACTS`` and the value.
    """
    parts = urlsplit(url)
    where = f"{ARTIFACTS_ENV}={url!r}"
    if parts.scheme == "file":
        from optuna.artifacts import FileSystemArtifactStore

        folder = Path(parts.path)
        if parts.netloc or not folder.is_absolute():
            raise ArtifactStoreError(f"{where}: use file:///absolute/folder")
        if not folder.is_dir():
            raise ArtifactStoreError(f"{where}: folder {str(folder)!r} does not exist")
        return FileSystemArtifactStore(folder)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ArtifactStoreError(f"{where}: use s3://bucket or s3://bucket/prefix")
        try:
            import boto3
            from optuna.artifacts import Boto3ArtifactStore
        except ImportError as exc:
            raise ArtifactStoreError(
                f"{where}: boto3 is not installed (pip install 'persona-hpo[s3]')"
            ) from exc
        client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
        return PrefixedStore(Boto3ArtifactStore(parts.netloc, client=client), parts.path)
    raise ArtifactStoreError(f"{where}: expected file:///folder or s3://bucket/prefix")


def configured_store() -> Any:
    """The store ``HPO_ARTIFACTS`` names, or None where it is unset."""
    url = os.environ.get(ARTIFACTS_ENV)
    return open_artifact_store(url) if url else None


def publish_file(
    engine: Any, layout: storage.OutputLayout, kind: str, study_name: str, path: Path
) -> storage.Published:
    """Upload a finished result file (results JSON, report HTML or PNG) to the shared store,
    when there is one, and record it by kind and study with its sha256 and its place under
    the output root, so that any machine can fetch it."""
    return storage.publish_and_record(
        engine, layout, path, kind=kind, study_name=study_name, trial_number=None
    )


def output_layout(output_root: str | Path) -> storage.OutputLayout:
    """The output root's layout, with the configured shared store."""
    return storage.OutputLayout(Path(output_root).resolve(), store=configured_store())


__all__ = [
    "ARTIFACTS_ENV",
    "ArtifactStoreError",
    "PrefixedStore",
    "configured_store",
    "open_artifact_store",
    "output_layout",
    "publish_file",
]
