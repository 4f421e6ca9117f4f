"""Atomic folders and files, and the sweep of what killed writers left behind.

A folder is written as ``.tmp-<name>-<host tag>_<random>`` beside its final place and renamed
into it when complete (:func:`atomic_directory`); its writer holds an ``flock`` on it while it
works, so that a process starting later removes it only once the writer is gone
(:func:`sweep_temp_folders`, at every process's start). A file is written beside its final
place and renamed over it (:func:`atomic_file`).
"""

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
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from storage.artifacts import OutputLayout


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


__all__ = [
    "TEMP_FOLDER_PARENTS",
    "TEMP_GRACE_S",
    "TEMP_PREFIXES",
    "atomic_directory",
    "atomic_file",
    "host_tag",
    "sweep_temp_dirs",
    "sweep_temp_folders",
    "sweep_unheld_temp_dirs",
    "temp_prefix",
]
