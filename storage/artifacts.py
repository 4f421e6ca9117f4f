"""Safe names, the output directory layout and recorded artifacts (atomic folders and files:
:mod:`storage.atomic`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.engine import dialect_insert
from storage.errors import InvalidNameError
from storage.models import DATASET_NAME_LENGTH, NO_STUDY, NO_TRIAL, Artifact

NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{DATASET_NAME_LENGTH - 1}}}$"
"""Names that are safe as one path component: no '/', NUL, quotes, no leading '.'."""

_NAME_RE = re.compile(NAME_PATTERN)
RESERVED_FOLDERS = frozenset({"trials", "lora_clusters", "figures"})
"""Folders that sit where a study's folder would (``models/trials``, ``results/figures``): a
study of that name would nest its outputs inside another's."""
_CHUNK = 1 << 20


def validate_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is safe to use as a single path component.

    Args:
        name: The name to check.
        what: What the name is, for the message (``"study name"``, ``"run name"``).

    Returns:
        ``name`` unchanged.

    Raises:
        InvalidNameError: If ``name`` is empty, too long, contains '..' or other characters.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-' (at most 100), "
            "not starting with '.'"
        )
    return name


def _check_index(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"invalid {what} {value!r}: use a non-negative integer")
    return value


@dataclass(frozen=True)
class OutputLayout:
    """Where outputs go under one root; every path is checked to stay under it."""

    root: Path
    """The output root directory."""
    store: Any = field(default=None, compare=False, repr=False)
    """The shared artifact store (Optuna's ``ArtifactStore`` protocol) that other machines
    read this root's adapters and results from, or None for one machine
    (:mod:`storage.shared`)."""

    def _under(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidNameError(f"path {str(path)!r} leaves the output root {str(self.root)!r}")
        return path

    def trial_adapter_dir(self, study_name: str, trial_number: int) -> Path:
        """Return ``root/models/trials/<study>/<trial_number>``."""
        validate_name(study_name, what="study name")
        number = _check_index(trial_number, "trial number")
        return self._under("models", "trials", study_name, str(number))

    def _study(self, study_name: str) -> str:
        validate_name(study_name, what="study name")
        if study_name in RESERVED_FOLDERS:
            raise InvalidNameError(
                f"study name {study_name!r} is the name of a shared output folder "
                f"({', '.join(sorted(RESERVED_FOLDERS))}): use another study name"
            )
        return study_name

    def cluster_adapter_dir(self, cluster_id: int, *, study_name: str | None = None) -> Path:
        """Return ``root/models/<study>/lora_clusters/cluster_<NN>``, the study's promoted
        adapter; without a study (``hpo train`` by hand) ``root/models/lora_clusters/...``."""
        number = _check_index(cluster_id, "cluster id")
        study = () if study_name is None else (self._study(study_name),)
        return self._under("models", *study, "lora_clusters", f"cluster_{number:02d}")

    def baseline_adapter_dir(self, study_name: str, name: str) -> Path:
        """Return ``root/models/<study>/baselines/<name>``, an adapter trained as a baseline
        of the study (the unified adapter, the cluster-0 adapter)."""
        validate_name(name, what="baseline name")
        return self._under("models", self._study(study_name), "baselines", name)

    def study_adapter_dir(self, study_name: str, group: str, name: str) -> Path:
        """Return ``root/models/<study>/<group>/<name>``, an adapter the study made beside its
        trials (``personas/<persona>``, ``moe_self/<persona>``)."""
        validate_name(group, what="adapter group")
        validate_name(name, what="adapter name")
        return self._under("models", self._study(study_name), group, name)

    def log_path(self, run_name: str) -> Path:
        """Return ``root/logs/<run_name>.log``."""
        validate_name(run_name, what="run name")
        return self._under("logs", f"{run_name}.log")

    def results_file(self, kind: str, filename: str, *, study_name: str | None = None) -> Path:
        """Return ``root/results/<study>/<kind>/<filename>``, or ``root/results/<kind>/...``
        for results that belong to no study."""
        validate_name(kind, what="results kind")
        validate_name(filename, what="file name")
        study = () if study_name is None else (self._study(study_name),)
        return self._under("results", *study, kind, filename)

    def figures_dir(self, *, study_name: str | None = None) -> Path:
        """Return ``root/results/<study>/figures``, or ``root/results/figures``."""
        study = () if study_name is None else (self._study(study_name),)
        return self._under("results", *study, "figures")

    def data_dir(self) -> Path:
        """Return ``root/data``."""
        return self._under("data")


def _file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def directory_sha256(path: Path) -> tuple[str, int]:
    """Hash a directory: sorted relative paths and file contents, streamed.

    Args:
        path: The directory.

    Returns:
        ``(hex digest, total size of the files in bytes)``.

    Raises:
        NotADirectoryError: If ``path`` is not a directory.
    """
    path = Path(path)
    if not path.is_dir():
        raise NotADirectoryError(f"cannot hash {str(path)!r}: not a directory")
    digest = hashlib.sha256()
    total = 0
    files = sorted(
        (p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix()
    )
    for file in files:
        rel = file.relative_to(path).as_posix().encode()
        digest.update(len(rel).to_bytes(8, "big") + rel)
        digest.update(file.stat().st_size.to_bytes(8, "big"))
        with file.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                total += len(chunk)
    return digest.hexdigest(), total


@dataclass(frozen=True)
class ArtifactInfo:
    """A recorded artifact."""

    id: int
    kind: str
    path: Path
    sha256: str
    size_bytes: int
    study_name: str | None
    trial_number: int | None
    persona_id: int | None


def record_artifact(
    session: Session,
    *,
    kind: str,
    path: Path,
    sha256: str,
    size_bytes: int,
    study_name: str | None = None,
    trial_number: int | None = None,
    persona_id: int | None = None,
) -> int:
    """Record an artifact; one with the same (kind, study, trial) is replaced.

    ``None`` study/trial are stored as ``''``/``-1`` so the unique key holds (SQL treats
    NULLs as distinct); :func:`get_artifact` maps them back.

    Args:
        session: An open session.
        kind: ``"trial_adapter"``, ``"cluster_adapter"``, ``"base_model"``, ...
        path: Where the artifact lies.
        sha256: From :func:`directory_sha256` (or the file's hash).
        size_bytes: Total size.
        study_name: The study it belongs to, if any.
        trial_number: The trial it belongs to, if any.
        persona_id: The persona it was trained for, if any.

    Returns:
        The artifact id.
    """
    values = {
        "kind": kind,
        "path": str(path),
        "sha256": sha256,
        "size_bytes": size_bytes,
        "study_name": NO_STUDY if study_name is None else study_name,
        "trial_number": NO_TRIAL if trial_number is None else trial_number,
        "persona_id": persona_id,
    }
    stmt = dialect_insert(session, Artifact).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["kind", "study_name", "trial_number"],
        set_={k: stmt.excluded[k] for k in ("path", "sha256", "size_bytes", "persona_id")},
    ).returning(Artifact.id)
    return int(session.execute(stmt).scalar_one())


def get_artifact(
    session: Session, *, kind: str, study_name: str | None, trial_number: int | None
) -> ArtifactInfo | None:
    """Return the artifact recorded for (kind, study, trial), or ``None``.

    Args:
        session: An open session.
        kind: The artifact kind.
        study_name: The study, or ``None``.
        trial_number: The trial, or ``None``.

    Returns:
        The artifact, or ``None`` if none is recorded.
    """
    row = session.execute(
        select(Artifact).where(
            Artifact.kind == kind,
            Artifact.study_name == (NO_STUDY if study_name is None else study_name),
            Artifact.trial_number == (NO_TRIAL if trial_number is None else trial_number),
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return ArtifactInfo(
        id=row.id,
        kind=row.kind,
        path=Path(row.path),
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        study_name=None if row.study_name == NO_STUDY else row.study_name,
        trial_number=None if row.trial_number == NO_TRIAL else row.trial_number,
        persona_id=row.persona_id,
    )


def verify_artifact(info: ArtifactInfo) -> bool:
    """Return whether the artifact still exists with its recorded hash and size.

    A directory is hashed with :func:`directory_sha256`, a file with plain sha256.

    Args:
        info: From :func:`get_artifact`.

    Returns:
        ``True`` if the contents match.
    """
    if info.path.is_dir():
        digest, size = directory_sha256(info.path)
    elif info.path.is_file():
        digest, size = _file_sha256(info.path)
    else:
        return False
    return digest == info.sha256 and size == info.size_bytes
