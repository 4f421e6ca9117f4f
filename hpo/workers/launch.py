"""Start N workers on this machine (one per GPU, or N CPU workers) and wait for them.

Each worker is a separate ``python -m hpo worker`` process with its own log file; on a GPU
machine each sees one device through ``CUDA_VISIBLE_DEVICES``. Ctrl-C or SIGTERM is passed
on, so every worker fails its running trial cleanly instead of leaving it RUNNING.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
    study_name: str, index: int, output_root: Path, threads: int | None
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


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as indices for ``CUDA_VISIBLE_DEVICES``
    (``nvidia-smi``'s count, narrowed by a ``CUDA_VISIBLE_DEVICES`` already set); empty on a
    machine without NVIDIA GPUs. Reads no GPU through torch, so the launcher stays light."""
    import shutil

    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def assign_gpus(n_workers: int, gpus: Sequence[str]) -> list[str | None]:
    """One device per worker: round robin over ``gpus`` (several workers may share one GPU,
    never one worker several), or the CPU for every worker when there is no GPU."""
    if not gpus:
        return [None] * n_workers
    return [gpus[i % len(gpus)] for i in range(n_workers)]


def start_workers(
    url: str,
    study_name: str,
    *,
    n_workers: int | None = None,
    gpus: Sequence[str] | None = None,
    output_root: Path = Path("."),
    threads: int | None = None,
    first_index: int = 0,
) -> list[WorkerProcess]:
    """Start one worker per GPU in ``gpus``, or ``n_workers`` CPU workers, with the worker
    indexes ``first_index``, ``first_index + 1``, ... (``hpo launch`` claims them from the
    study's counter: :func:`hpo.workers.place.claim_worker_index_block`).

    The workers share the cores: each gets :func:`threads_per_worker` threads (``cores //
    workers``), GPU workers too, unless ``threads`` is given.
    """
    if gpus:
        slots: list[str | None] = list(gpus)
    elif n_workers and n_workers >= 1:
        slots = [None] * n_workers  # the caller chose the CPU (hpo launch: assign_gpus)
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
                worker_command(study_name, index, Path(output_root), threads),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=worker_environment(url, gpu=gpu, threads=threads),
            )
        workers.append(WorkerProcess(index, process, log_path, gpu))
    return workers


def wait_for_workers(
    workers: Sequence[WorkerProcess],
    *,
    poll: Callable[[], None] | None = None,
    interval: float = 2.0,
) -> list[int]:
    """Wait until every worker exits, calling ``poll`` now and then (for progress).

    SIGINT and SIGTERM are forwarded to the workers as SIGTERM.

    Returns:
        The exit codes, in worker order.
    """

    def forward(signum: int, frame: object) -> None:
        for w in workers:
            if w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)

    old_int = signal.signal(signal.SIGINT, forward)
    old_term = signal.signal(signal.SIGTERM, forward)
    try:
        while any(w.process.poll() is None for w in workers):
            if poll is not None:
                poll()
            time.sleep(interval)
        if poll is not None:
            poll()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    return [int(w.process.returncode) for w in workers]


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
