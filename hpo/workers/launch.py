"""Start N workers on this machine (one or more per GPU, or N CPU workers) and supervise them.

Each worker is a separate ``python -m hpo worker`` process with its own log file; on a GPU
machine each sees one device through ``CUDA_VISIBLE_DEVICES`` (:mod:`hpo.workers.gpus` plans
which). The launcher stays with its workers until the last one exits (:func:`supervise`):
SIGTERM or Ctrl-C to it is passed on to every worker as SIGTERM, so that each fails and
re-queues its running trial instead of leaving it RUNNING; a database outage does not end it
(its progress waits, :meth:`storage.OutageGuard.attempt`); and should the launcher itself
fail, it stops its workers rather than leave them without a supervisor.

Threads, one rule for every worker: the workers on one machine share its cores, each gets
``cores // workers on this machine`` torch threads (:func:`threads_per_worker`), GPU workers
too (their CPU work would otherwise oversubscribe the cores N times). ``hpo launch`` knows
how many workers it starts; a standalone ``hpo worker`` is told by ``--local-workers N`` (env
``HPO_LOCAL_WORKERS``; default 1: alone, all cores). ``--threads`` overrides both.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storage


@dataclass(frozen=True)
class WorkerProcess:
    """A started worker."""

    index: int
    process: subprocess.Popen[bytes]
    log_path: Path
    gpu: str | None


def threads_per_worker(workers_on_machine: int, cores: int | None = None) -> int:
    """Torch threads of each worker when ``workers_on_machine`` workers share the cores.

    Args:
        workers_on_machine: Workers running on this machine (this one included).
        cores: CPU cores of the machine; None for ``os.cpu_count()``.

    Returns:
        ``cores // workers_on_machine``, at least 1.

    Raises:
        ValueError: If ``workers_on_machine`` is below 1.
    """
    if workers_on_machine < 1:
        raise ValueError(f"workers_on_machine={workers_on_machine}: expected 1 or more")
    if cores is None:
        cores = os.cpu_count() or 1
    return max(1, cores // workers_on_machine)


def worker_command(
    study_name: str,
    index: int,
    output_root: Path,
    threads: int | None,
    *,
    grace_period: int | None = None,
) -> list[str]:
    """The command line of one worker. The storage URL is not on it: a command line is
    readable by every user (``ps``), so the URL, password and all, goes in the worker's
    environment (:func:`worker_environment`)."""
    cmd = [
        sys.executable,
        "-m",
        "hpo",
        "worker",
        "--study",
        study_name,
        "--worker-index",
        str(index),
        "--output-root",
        str(output_root),
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    if grace_period is not None:
        cmd += ["--grace-period", str(grace_period)]
    return cmd


def worker_environment(
    url: str, *, gpu: str | None = None, threads: int | None = None
) -> dict[str, str]:
    """The environment of one worker: this process's, with the storage URL in
    ``HPO_STORAGE`` (only the same user can read a process's environment), one GPU or none
    in ``CUDA_VISIBLE_DEVICES``, and ``OMP_NUM_THREADS`` when ``threads`` is given."""
    from storage.engine import STORAGE_ENV

    env = dict(os.environ)
    env[STORAGE_ENV] = url
    env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def start_workers(
    url: str,
    study_name: str,
    *,
    n_workers: int | None = None,
    gpus: Sequence[str] | None = None,
    output_root: Path = Path("."),
    threads: int | None = None,
    first_index: int = 0,
    grace_period: int | None = None,
) -> list[WorkerProcess]:
    """Start one worker per entry of ``gpus`` (a GPU listed twice gets two workers), or
    ``n_workers`` CPU workers, with the worker indexes ``first_index``, ``first_index + 1``,
    ... (``hpo launch`` claims them from the study's counter:
    :func:`hpo.workers.place.claim_worker_index_block`), each with ``--grace-period
    grace_period`` when it is given.

    The workers share the cores: each gets :func:`threads_per_worker` threads (``cores //
    workers``), GPU workers too, unless ``threads`` is given.
    """
    if gpus:
        slots: list[str | None] = list(gpus)
    elif n_workers and n_workers >= 1:
        slots = [None] * n_workers  # the caller chose the CPU (hpo launch: plan_devices)
    else:
        raise ValueError(f"need gpus or n_workers >= 1, got gpus={gpus}, n_workers={n_workers}")
    if threads is None:
        threads = threads_per_worker(len(slots))
    log_dir = Path(output_root) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = []
    for index, gpu in enumerate(slots, start=first_index):
        log_path = log_dir / f"{study_name}-worker-{index}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                worker_command(
                    study_name, index, Path(output_root), threads, grace_period=grace_period
                ),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=worker_environment(url, gpu=gpu, threads=threads),
            )
        workers.append(WorkerProcess(index, process, log_path, gpu))
    return workers


@dataclass(frozen=True)
class Supervision:
    """How the launcher's workers ended."""

    codes: list[int]
    """Each worker's exit code, in worker order (``-N``: killed by signal N)."""
    signal: int | None = None
    """The first SIGTERM or SIGINT the launcher got and passed on; None if none came."""

    @property
    def succeeded(self) -> bool:
        """Whether every worker exited 0."""
        return not any(self.codes)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""What the launcher passes on to its workers (as SIGTERM)."""


@contextmanager
def stop_signals() -> Iterator[list[int]]:
    """Catch SIGINT and SIGTERM from here on, before any worker starts: a signal that comes
    while the workers are being started is noted in the yielded list, and :func:`supervise`
    (given that list) passes it on as soon as they exist, instead of the launcher dying and
    leaving them behind. The previous handlers are restored on leaving."""
    received: list[int] = []

    def note(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, note) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def supervise(
    workers: Sequence[WorkerProcess],
    *,
    poll: Callable[[], None] | None = None,
    interval: float = 2.0,
    received: list[int] | None = None,
) -> Supervision:
    """Stay with the workers until every one has exited, calling ``poll`` now and then (for
    progress) until a stop signal comes.

    SIGINT and SIGTERM are passed on to the workers still running as SIGTERM (each fails and
    re-queues its running trial, then exits 130), and so are those already in ``received``
    (from :func:`stop_signals`); the launcher then waits for them. ``poll`` must not raise on
    a database outage (``hpo launch`` polls through :meth:`storage.OutageGuard.attempt`). If
    anything else ends the wait (an error in ``poll``, a ``KeyboardInterrupt``), the workers
    are stopped the same way and waited for before it propagates: a launcher never leaves its
    workers running without a supervisor.
    """
    received = [] if received is None else received

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        _stop(workers)

    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        if received:  # came while the workers were being started
            _stop(workers)
        while any(w.process.poll() is None for w in workers):
            if poll is not None and not received:
                poll()
            time.sleep(interval)
        if poll is not None and not received:
            poll()
    except BaseException:
        _stop(workers)
        for w in workers:
            w.process.wait()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return Supervision(
        [int(w.process.returncode) for w in workers], received[0] if received else None
    )


def _stop(workers: Sequence[WorkerProcess]) -> None:
    """SIGTERM to each worker still running."""
    for w in workers:
        if w.process.poll() is None:
            w.process.send_signal(signal.SIGTERM)


def wait_for_workers(
    workers: Sequence[WorkerProcess],
    *,
    poll: Callable[[], None] | None = None,
    interval: float = 2.0,
) -> list[int]:
    """The exit codes of :func:`supervise`, in worker order."""
    return supervise(workers, poll=poll, interval=interval).codes


def patient_poll(
    poll: Callable[[], None], guard: storage.OutageGuard, say: Callable[[str], None]
) -> Callable[[], None]:
    """``poll`` (the launcher's progress, which reads the database) made safe for
    :func:`supervise` during a database outage: each call is one :meth:`OutageGuard.attempt`,
    skipped while the database is unreachable (the guard logs when it goes and comes back);
    past the guard's patience, ``say`` gets its one line once per outage, and the launcher
    goes on supervising its workers (they exit on their own past their grace period)."""
    said = [False]

    def patient() -> None:
        try:
            guard.attempt(poll)
        except storage.DatabaseUnavailable as exc:
            if not said[0]:
                say(f"{exc}; the launcher stays with its workers")
                said[0] = True
            return
        if guard.down_for is None:
            said[0] = False

    return patient


EXIT_STOPPED = 130
"""A worker's exit code after SIGTERM or Ctrl-C (``hpo.cli.errors.EXIT_INTERRUPTED``)."""


def exit_line(worker: WorkerProcess, code: int) -> str:
    """``hpo launch``'s line for one exited worker: its index, pid, device, exit code and what
    the code means, and its log when it did not succeed."""
    where = f"gpu {worker.gpu}" if worker.gpu is not None else "cpu"
    line = f"worker {worker.index} (pid {worker.process.pid}, {where}): exit {code}"
    if code == 0:
        return line + " (done)"
    if code == EXIT_STOPPED:
        meaning = "stopped by signal: its running trial, if any, re-queued"
    elif code < 0:
        meaning = f"killed by {_signal_name(-code)}"
    else:
        meaning = "failed"
    return f"{line} ({meaning}), log {worker.log_path}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def build_notices(model: Any, every: float = 30.0) -> Callable[[], str | None]:
    """For ``hpo launch``: a poll that returns a line while the workers wait for a build of
    the tiny base model (``model``, the study's ``ModelConfig``), naming the builder's pid, at
    once and then at most every ``every`` seconds; None otherwise (no build, another base model,
    or said recently). The workers' logs say the same; this puts it where the user looks."""
    from trainers.tiny.build_lock import build_holder
    from trainers.tiny.model import tiny_model_dir

    if model.base_model != "tiny":
        return lambda: None
    target = tiny_model_dir(model)
    last = [-math.inf]

    def poll() -> str | None:
        now = time.monotonic()
        if now - last[0] < every or (target / "build.json").exists():
            return None
        holder = build_holder(target)
        if holder is None:
            return None
        last[0] = now
        return (
            f"the workers wait for the tiny base model build in {target.parent} "
            f"({holder.describe()})"
        )

    return poll
