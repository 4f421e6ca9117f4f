"""Safe names, the output directory layout, atomic directories and recorded artifacts."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TEMP_PREFIXES = (".tmp-", ".old-")
"""The folders :func:`atomic_directory` writes beside a final one while it works."""
TEMP_GRACE_S = 60.0
"""A temporary folder younger than this is never swept: it may be one whose writer has just
made it and not yet taken its lock."""


def host_tag() -> str:
    """This machine's tag in the temporary folders it writes (8 hex of its host name's
    sha256): a sweep removes only its own machine's, since a lock taken on another machine
    may not reach this one through a shared filesystem."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_prefix(kind: str, name: str) -> str:
    """``.tmp-<name>-<host tag>_`` (``kind`` ``"tmp"``) or ``.old-<name>-<host tag>_``: how
    :func:`atomic_directory` starts the name of a folder it works in."""
    return f".{kind}-{name}-{host_tag()}_"


def _ours(path: Path) -> bool:
    """Whether a temporary folder was made on this machine (its name has our host tag)."""
    suffix = path.name.rsplit("-", 1)[-1]
    return suffix.startswith(f"{host_tag()}_")


@contextmanager
def _held(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` while the block runs, so that
    :func:`sweep_temp_folders` of any process leaves it alone. The lock is on the folder's
    inode: it stays held when the folder is renamed, and goes with the process when it dies.
    On a filesystem without such locks the block runs unlocked (nothing is swept there)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``final`` only if the block succeeds.

    The temporary directory is ``.tmp-<name>-<host tag>_<random>`` next to ``final``
    (:func:`temp_prefix`), held by this process (an exclusive ``flock`` on it) until it is
    renamed or removed, so that a sweep at another process's start
    (:func:`sweep_temp_folders`) removes it only once its writer is gone. On success every
    file and directory is fsynced and the directory is renamed into place (a previous
    ``final`` is moved aside into ``.old-<name>-<host tag>_<random>``, held the same way,
    then deleted). On any error the temporary directory is removed and a previous
    ``final`` is left intact.

    Args:
        final: Where the finished directory should end up.

    Yields:
        The temporary directory to write into.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix("tmp", final.name), dir=final.parent))
    try:
        with _held(tmp):
            yield tmp
            for dirpath, _dirnames, filenames in os.walk(tmp):
                for filename in filenames:
                    _fsync(Path(dirpath, filename))
                _fsync(Path(dirpath))
            _replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``, a previous ``final`` moved aside first, then deleted."""
    with contextlib.ExitStack() as stack:
        old: Path | None = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix("old", final.name), dir=final.parent))
            stack.enter_context(_held(old))
            os.replace(final, old / final.name)
        try:
            os.rename(tmp, final)
        except BaseException:
            if old is not None:
                os.replace(old / final.name, final)
                shutil.rmtree(old, ignore_errors=True)
            raise
        _fsync(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def sweep_unheld_temp_dirs(parent: Path, *, grace: float = TEMP_GRACE_S) -> list[Path]:
    """Remove the ``.tmp-*`` and ``.old-*`` folders in ``parent`` that this machine's
    processes made and no live process holds.

    Each is taken with an exclusive ``flock`` without waiting (:func:`atomic_directory`'s
    writer holds it while it works), and removed under that lock; one held, one younger
    than ``grace`` seconds, one whose lock cannot be asked for (a filesystem without
    ``flock``), and one made on another machine or by code before the host tag (its name
    lacks this machine's :func:`host_tag`) are kept.

    Returns:
        The folders removed.
    """
    try:
        entries = sorted(Path(parent).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    now = time.time()
    for path in entries:
        if not path.name.startswith(TEMP_PREFIXES) or not _ours(path):
            continue
        try:
            if now - path.lstat().st_mtime < grace:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:  # gone, a file, a link
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live writer, or no locks here: keep it
            os.close(fd)
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


TEMP_FOLDER_PARENTS = ("models", "results")
"""The trees under the output root where :func:`atomic_directory` writes: ``models/<study>/
<group>/`` (baselines, persona and MoE adapters, the promoted one), ``models/trials/<study>/``,
``models/lora_clusters/``, ``results/<study>/`` (the report's set of files)."""


def sweep_temp_folders(layout: OutputLayout, *, grace: float = TEMP_GRACE_S) -> list[Path]:
    """Remove what killed writers left under the output root's ``models/`` and ``results/``
    (:func:`sweep_unheld_temp_dirs` in every folder one and two levels down), at a process's
    start. The download cache has its own sweep (:func:`storage.sweep_download_cache`).

    Returns:
        The folders removed.
    """
    removed: list[Path] = []
    for top in TEMP_FOLDER_PARENTS:
        level_one = _subfolders(layout.root / top)
        for folder in level_one:
            removed += sweep_unheld_temp_dirs(folder, grace=grace)
            for inner in _subfolders(folder):
                removed += sweep_unheld_temp_dirs(inner, grace=grace)
    return removed


def _subfolders(folder: Path) -> list[Path]:
    """The folders in ``folder`` (links and temporary folders left out)."""
    try:
        return sorted(
            p
            for p in folder.iterdir()
            if not p.name.startswith(TEMP_PREFIXES) and p.is_dir() and not p.is_symlink()
        )
    except (FileNotFoundError, NotADirectoryError):
        return []


_LEFTOVER_RE = re.compile(r"^\.(?:tmp|old)-(?P<name>.+)-[^-]+$")


def sweep_temp_dirs(parent: Path, live: Callable[[], Collection[str]]) -> list[Path]:
    """Remove what :func:`atomic_directory` left in ``parent`` for names no longer written.

    A process killed inside :func:`atomic_directory` leaves ``.tmp-<name>-<random>`` (a
    partial directory) or ``.old-<name>-<random>`` beside ``<name>``. The folders are listed
    first and ``live`` is asked afterwards, so a directory begun after the listing is never
    touched, and one listed for a name that ``live`` still returns is kept.

    Args:
        parent: The folder that holds the final directories (``models/trials/<study>``).
        live: Returns the names still being written (the numbers of RUNNING trials).

    Returns:
        The folders removed.
    """
    parent = Path(parent)
    try:
        leftovers = [
            (p, m["name"])
            for p in parent.iterdir()
            if (m := _LEFTOVER_RE.match(p.name)) is not None and p.is_dir()
        ]
    except FileNotFoundError:
        return []
    if not leftovers:
        return []
    keep = set(live())
    removed = []
    for path, name in leftovers:
        if name not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """Write a text file atomically: a temp file beside it, fsync, then rename over ``path``.

    On an exception the temp file is removed and any previous ``path`` stays intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


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
