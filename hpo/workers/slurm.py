"""``hpo launch --slurm``: a study's workers as one Slurm array job, one task and one GPU each.

The script is written under ``<output root>/logs/slurm/`` and submitted with ``sbatch``. Each
array task ``exec``s one ``hpo worker`` (no shell stays in between to swallow a signal), which
takes a fresh worker index from the database, so neither a re-queued task nor a second array
ever repeats another worker's sampler seed (:mod:`hpo.workers.place`). Slurm sets
``CUDA_VISIBLE_DEVICES`` to the task's one GPU (``--gres=gpu:1``).

Stopping: ``scancel``, preemption and the time limit all reach the worker as SIGTERM, which
fails the running trial at once and re-queues it with the same parameters (the study's budget
stays exact; :mod:`hpo.workers.stop`). The script asks for that SIGTERM
:data:`SIGNAL_LEAD_SECONDS` before the time limit (``--signal=B:TERM@120``: ``B:`` sends it to
the batch step, which is the worker itself), so that the trial is re-queued before SIGKILL
could lose it to the grace period; ``--requeue`` lets a preempted task come back and go on.

The storage URL is never in the script or on a command line: ``sbatch`` runs with
``HPO_STORAGE`` in its environment, which it passes to the job (``--export=ALL``, Slurm's
default), and the script stops with one line where the job did not get it.

``--evaluator`` adds a second job: ``hpo evaluator --watch --until-done``, which evaluates the
top trials as they come and exits once the budget is spent and they are evaluated.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hpo.study.config_check import ConfigError, check_fields, require

SIGNAL_LEAD_SECONDS = 120
"""How long before its time limit a task gets SIGTERM: a trial is failed and re-queued in
seconds, well before Slurm's SIGKILL."""
LOG_DIR = Path("logs") / "slurm"
"""Where the scripts and the tasks' logs go, under the output root."""
SBATCH_TIMEOUT = 60.0
"""Seconds ``sbatch`` may take to answer."""

_WORD = re.compile(r"[A-Za-z0-9_.:+@-]+")
"""A value that goes into an ``#SBATCH`` line as it is: no spaces, quotes or ``%``."""
_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}")
"""Slurm's time formats: minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
_MEM = re.compile(r"\d+[KMGT]?")
"""Slurm's memory: a number of megabytes, or with a K, M, G or T suffix."""
_PATH = re.compile(r"[^\s%'\"\\$`]+")
"""A path Slurm and the shell take as it is (``%`` would be a Slurm pattern)."""


def _reserved(arg: str) -> bool:
    """Whether an sbatch option is one ``hpo launch`` sets, or would lose ``HPO_STORAGE``."""
    name, value = [*re.split(r"[=\s]", arg, maxsplit=1), ""][:2]
    if name == "--export":
        return not value.startswith("ALL")
    if name in ("--array", "--output", "--error"):
        return True
    return not arg.startswith("--") and arg[1:2] in ("a", "o", "e")


class SlurmError(RuntimeError):
    """``sbatch`` is missing, refused the job, or answered with no job id."""


@dataclass(frozen=True)
class SlurmJob:
    """What ``hpo launch --slurm`` asks Slurm for, each field one of its options."""

    workers: int
    """Array tasks: one worker each (``--workers``)."""
    gpus_per_worker: int = 1
    """GPUs per task (``--gres=gpu:N``): 1, or 0 on a CPU partition."""
    cpus_per_task: int | None = None
    """CPU cores per task, also the worker's torch threads; None: Slurm's default (1)."""
    partition: str | None = None
    """Slurm partition; None: the cluster's default."""
    time: str | None = None
    """Time limit per task (``4:00:00``, ``1-12:00:00``); None: the partition's."""
    account: str | None = None
    """Account charged; None: the user's default."""
    mem: str | None = None
    """Memory per task (``16G``); None: the cluster's default per CPU."""
    sbatch_args: tuple[str, ...] = ()
    """Further ``sbatch`` options, one ``#SBATCH`` line each (``--qos=high``)."""
    evaluator: bool = False
    """Also submit an evaluator job that exits once the budget is spent and evaluated."""

    def __post_init__(self) -> None:
        check_fields(self)
        require(1 <= self.workers <= 100_000, "--workers", self.workers, "1..100000")
        require(
            self.gpus_per_worker in (0, 1),
            "--gpus-per-worker",
            self.gpus_per_worker,
            "1, or 0 for a CPU partition (a worker trains on one device)",
        )
        require(
            self.cpus_per_task is None or self.cpus_per_task >= 1,
            "--cpus-per-task",
            self.cpus_per_task,
            ">= 1",
        )
        for name in ("partition", "account"):
            value = getattr(self, name)
            require(value is None or bool(_WORD.fullmatch(value)), f"--{name}", value, "a name")
        require(
            self.time is None or bool(_TIME.fullmatch(self.time)),
            "--time",
            self.time,
            "a Slurm time such as 90, 4:00:00 or 1-12:00:00",
        )
        require(
            self.mem is None or bool(_MEM.fullmatch(self.mem)),
            "--mem",
            self.mem,
            "megabytes or a size such as 16G",
        )
        for arg in self.sbatch_args:
            require(
                arg.startswith("-") and "\n" not in arg and "\r" not in arg,
                "--sbatch-arg",
                arg,
                "one sbatch option on one line, such as --qos=high",
            )
            require(
                not _reserved(arg),
                "--sbatch-arg",
                arg,
                "an option other than --array, --output and --error (hpo launch sets them) "
                "and --export other than ALL (the job needs HPO_STORAGE from the environment)",
            )


def _check_path(path: Path, what: str) -> Path:
    path = path.absolute()
    if not _PATH.fullmatch(str(path)):
        raise ConfigError(
            f"{what} {str(path)!r}: Slurm scripts need a path without spaces, quotes, '$' or '%'"
        )
    return path


def _directives(job: SlurmJob, name: str, log: Path) -> list[str]:
    """The ``#SBATCH`` lines both jobs share, then their own log and name."""
    lines = [f"--job-name={name}", "--ntasks=1"]
    if job.gpus_per_worker:
        lines.append(f"--gres=gpu:{job.gpus_per_worker}")
    for option, value in (
        ("cpus-per-task", job.cpus_per_task),
        ("partition", job.partition),
        ("time", job.time),
        ("account", job.account),
        ("mem", job.mem),
    ):
        if value is not None:
            lines.append(f"--{option}={value}")
    lines += [
        f"--output={log}",
        "--open-mode=append",  # a re-queued task adds to its log
        f"--signal=B:TERM@{SIGNAL_LEAD_SECONDS}",
        "--requeue",
        *job.sbatch_args,
    ]
    return [f"#SBATCH {line}" for line in lines]


def _body(job: SlurmJob, workdir: Path, command: list[str]) -> list[str]:
    """Check the environment, set the threads (and no GPU on a CPU partition), exec."""
    lines = [
        "set -eu",
        'if [ -z "${HPO_STORAGE:-}" ]; then',
        "  echo \"hpo: error: HPO_STORAGE is not set in the job's environment: submit with it set"
        " and sbatch's default --export=ALL\" >&2",
        "  exit 2",
        "fi",
        f"cd {shlex.quote(str(workdir))}",
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
    ]
    if not job.gpus_per_worker:
        lines.append("export CUDA_VISIBLE_DEVICES=")  # the CPU, never a GPU nobody asked for
    lines.append("exec " + " ".join(command))
    return lines


def _hpo(*args: str) -> list[str]:
    return [shlex.quote(sys.executable), "-m", "hpo", *(shlex.quote(a) for a in args)]


def _script(
    job: SlurmJob,
    output_root: Path,
    workdir: Path | None,
    *,
    name: str,
    log_name: str,
    comment: list[str],
    array: bool,
    args: list[str],
) -> str:
    """An sbatch script: the comment, the directives, then the checks and ``exec hpo ARGS``."""
    root = _check_path(output_root, "output root")
    workdir = _check_path(workdir or Path.cwd(), "working directory")
    header = ["#!/bin/bash", *(f"# {line}" for line in comment)]
    if array:
        header.append(f"#SBATCH --array=0-{job.workers - 1}")
    header += _directives(job, name, root / LOG_DIR / log_name)
    command = _hpo(*args, "--output-root", str(root))
    if array:  # the workers' threads are the task's cores
        command += ["--threads", '"${SLURM_CPUS_PER_TASK:-1}"']
    return "\n".join([*header, *_body(job, workdir, command), ""])


def worker_script(
    job: SlurmJob, study_name: str, output_root: Path, workdir: Path | None = None
) -> str:
    """The sbatch script of the workers: an array of ``job.workers`` tasks, each one
    ``hpo worker`` with the task's cores as its threads and an index from the database."""
    return _script(
        job,
        output_root,
        workdir,
        name=f"hpo-{study_name}",
        log_name=f"{study_name}-%A_%a.log",
        comment=[
            f"hpo launch --slurm: {job.workers} workers of study {study_name}, one array task "
            "each. Each task execs one `hpo worker`,",
            "which takes a fresh worker index from the database; the storage URL comes from "
            "HPO_STORAGE in the job's environment.",
        ],
        array=True,
        args=["worker", "--study", study_name],
    )


def evaluator_script(
    job: SlurmJob, study_name: str, output_root: Path, workdir: Path | None = None
) -> str:
    """The sbatch script of the evaluator: one task that evaluates the top trials as they
    come and exits once the budget is spent and they are evaluated."""
    return _script(
        job,
        output_root,
        workdir,
        name=f"hpo-{study_name}-evaluator",
        log_name=f"{study_name}-evaluator-%j.log",
        comment=[
            f"hpo launch --slurm --evaluator: the evaluator of study {study_name}; it exits "
            "once the budget is spent and the top trials are evaluated."
        ],
        array=False,
        args=["evaluator", "--study", study_name, "--watch", "--until-done"],
    )


@dataclass(frozen=True)
class Submitted:
    """A job ``sbatch`` accepted."""

    job_id: str
    script: Path
    log_pattern: Path
    """Where its log goes (``%A``: the array job id, ``%a``: the task, ``%j``: the job)."""


def sbatch_binary() -> str:
    """The ``sbatch`` program, or :class:`SlurmError` naming what to do."""
    found = shutil.which("sbatch")
    if found is None:
        raise SlurmError("sbatch not found: run `hpo launch --slurm` where Slurm's clients are")
    return found


def submit(script: str, path: Path, url: str) -> str:
    """Write ``script`` to ``path`` and submit it; the storage URL goes in sbatch's
    environment only.

    Returns:
        The job id ``sbatch --parsable`` printed.

    Raises:
        SlurmError: sbatch is missing or refused the job (its message included).
    """
    from storage import atomic_file
    from storage.engine import STORAGE_ENV

    binary = sbatch_binary()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as out:
        out.write(script)
    env = {**os.environ, STORAGE_ENV: url}
    try:
        done = subprocess.run(
            [binary, "--parsable", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=SBATCH_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(f"sbatch did not answer within {SBATCH_TIMEOUT:.0f} s") from exc
    job_id = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not job_id.isdigit():
        path.unlink(missing_ok=True)  # no script kept for a job that never was
        reason = " ".join(done.stderr.split()) or f"exit code {done.returncode}"
        if done.returncode == 0:
            reason = f"no job id in its answer {done.stdout.strip()!r}"
        raise SlurmError(f"sbatch refused {path}: {reason}")
    return job_id


def submit_study(job: SlurmJob, study_name: str, output_root: Path, url: str) -> list[Submitted]:
    """Submit the workers' array (and the evaluator's job) of a study.

    Returns:
        The workers' job, then the evaluator's when ``job.evaluator``.
    """
    root = _check_path(output_root, "output root")
    folder = root / LOG_DIR
    submitted: list[Submitted] = []
    scripts = [("workers", worker_script(job, study_name, root), "%A_%a")]
    if job.evaluator:
        scripts.append(("evaluator", evaluator_script(job, study_name, root), "evaluator-%j"))
    for kind, script, pattern in scripts:
        path = folder / f"{study_name}-{kind}.sbatch"
        try:
            job_id = submit(script, path, url)
        except SlurmError as exc:
            if not submitted:
                raise
            raise SlurmError(f"the workers run as job {submitted[0].job_id}, but {exc}") from exc
        suffix = pattern.replace("%A", job_id).replace("%j", job_id)
        submitted.append(Submitted(job_id, path, folder / f"{study_name}-{suffix}.log"))
    return submitted
