"""The lock around a build of the tiny model in the shared cache, and who holds it.

Several processes may need the tiny model at once (the workers of ``hpo launch``, an evaluator,
the tests of other users of the cache); one builds it and the others wait. A wait of minutes
with no word looks like a hang, so the builder writes a holder file beside the lock (its pid,
host and start time; filelock truncates the lock file itself when another process opens it)
and a waiter says whom it waits for, at once and then every ``notice_every`` seconds.

The lock is filelock's (an ``flock`` on Unix): the kernel drops it when its holder dies, so a
killed builder never blocks the next one; its holder file is then stale, and the next builder
overwrites it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
HOLDER_SUFFIX = ".building"
"""Beside the lock: the JSON of the process that builds (``pid``, ``host``, ``started``)."""


@dataclass(frozen=True)
class BuildHolder:
    """The process that builds a model, as its holder file says."""

    pid: int
    host: str
    started: float
    """``time.time()`` when it took the lock."""

    def describe(self, now: float | None = None) -> str:
        """``pid 123 on host, building for 40 s``."""
        seconds = max(0.0, (time.time() if now is None else now) - self.started)
        return f"pid {self.pid} on {self.host}, building for {seconds:.0f} s"


def lock_path(target: Path) -> Path:
    """The lock file of the build of ``target``."""
    return Path(str(target) + LOCK_SUFFIX)


def holder_path(target: Path) -> Path:
    """The holder file of the build of ``target``."""
    return Path(str(target) + HOLDER_SUFFIX)


def build_holder(target: Path) -> BuildHolder | None:
    """Who builds ``target`` now, or None when no build runs.

    A holder file whose lock is free (its builder died) or that cannot be read counts as no
    build.
    """
    try:
        data = json.loads(holder_path(target).read_text(encoding="utf-8"))
        holder = BuildHolder(int(data["pid"]), str(data["host"]), float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return holder if _locked(target) else None


def _locked(target: Path) -> bool:
    """Whether another process holds the build lock of ``target`` (tried, never waited for)."""
    from filelock import FileLock, Timeout

    if not lock_path(target).exists():
        return False
    lock = FileLock(str(lock_path(target)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@contextmanager
def build_lock(target: Path, *, notice_every: float) -> Iterator[None]:
    """Hold the build lock of ``target``; while another process holds it, log whom this one
    waits for at once and every ``notice_every`` seconds.

    Raises:
        ValueError: If ``notice_every`` is not positive.
    """
    from filelock import FileLock, Timeout

    if not notice_every > 0:
        raise ValueError(f"notice_every={notice_every!r}: expected a positive number of seconds")
    lock = FileLock(str(lock_path(target)))
    waited_since = time.monotonic()
    timeout = 0.0
    while True:
        try:
            lock.acquire(timeout=timeout)
            break
        except Timeout:
            holder = build_holder(target)
            log.warning(
                "waiting for the tiny base model build in %s (%s); waited %.0f s",
                target.parent,
                holder.describe() if holder else "holder unknown",
                time.monotonic() - waited_since,
            )
            timeout = notice_every
    holder_file = holder_path(target)
    try:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        holder_file.write_text(json.dumps(me), encoding="utf-8")
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()
