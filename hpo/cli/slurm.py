"""``hpo launch --slurm``: the options of a Slurm array job and what the command prints; the
script and its submission are :mod:`hpo.workers.slurm`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hpo.cli.errors import BadInputError, CommandError

F = TypeVar("F", bound=Callable[..., Any])

SLURM_ONLY = (
    "gpus_per_worker",
    "cpus_per_task",
    "partition",
    "time",
    "account",
    "mem",
    "sbatch_args",
    "dry_run",
    "evaluator",
)
"""The options that mean something only with ``--slurm``."""


def slurm_options(f: F) -> F:
    """The options of ``hpo launch --slurm``, passed to the command as keyword arguments."""
    options = [
        click.option(
            "--slurm",
            is_flag=True,
            help="submit the workers as one Slurm array job (one task and one GPU each) "
            "instead of starting them here; needs --workers N",
        ),
        click.option(
            "--gpus-per-worker",
            type=click.IntRange(0, 1),
            default=None,
            help="--slurm: GPUs per task  [default: 1; 0 for a CPU partition]",
        ),
        click.option(
            "--cpus-per-task",
            type=click.IntRange(min=1),
            default=None,
            help="--slurm: CPU cores per task, also the worker's torch threads  [default: Slurm's]",
        ),
        click.option("--partition", default=None, help="--slurm: the partition"),
        click.option("--time", default=None, help="--slurm: time limit per task, e.g. 4:00:00"),
        click.option("--account", default=None, help="--slurm: the account charged"),
        click.option("--mem", default=None, help="--slurm: memory per task, e.g. 16G"),
        click.option(
            "--sbatch-arg",
            "sbatch_args",
            multiple=True,
            metavar="OPTION",
            help="--slurm: one more sbatch option, e.g. --sbatch-arg=--qos=high (repeatable)",
        ),
        click.option(
            "--dry-run",
            is_flag=True,
            help="--slurm: print the sbatch script(s) and submit nothing",
        ),
        click.option(
            "--evaluator",
            is_flag=True,
            help="--slurm: also submit an evaluator job, which exits once the budget is "
            "spent and the top trials are evaluated",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def refuse_slurm_only(options: dict[str, Any]) -> None:
    """Without ``--slurm``: refuse the options that need it, naming the first one given."""
    for name in SLURM_ONLY:
        if options.get(name) not in (None, False, ()):
            flag = "--sbatch-arg" if name == "sbatch_args" else f"--{name.replace('_', '-')}"
            raise click.UsageError(f"{flag} needs --slurm")


def launch_on_slurm(
    name: str,
    n_workers: int | None,
    gpus: list[str] | None,
    threads: int | None,
    url: str,
    output_root: Path,
    options: dict[str, Any],
) -> None:
    """Write the sbatch script(s) of the study's workers; print them (``--dry-run``) or submit
    them and say how to watch them and where their logs go."""
    from hpo.study.config_check import ConfigError
    from hpo.workers.slurm import (
        SlurmError,
        SlurmJob,
        evaluator_script,
        submit_study,
        worker_script,
    )
    from storage import masked_url

    if n_workers is None or gpus is not None:
        raise click.UsageError("--slurm takes --workers N (Slurm picks the GPUs), not --gpus")
    if threads is not None:
        raise click.UsageError("--slurm: give --cpus-per-task, the worker's threads, not --threads")
    gpus_per_worker = options["gpus_per_worker"]
    try:
        job = SlurmJob(
            workers=n_workers,
            gpus_per_worker=1 if gpus_per_worker is None else gpus_per_worker,
            cpus_per_task=options["cpus_per_task"],
            partition=options["partition"],
            time=options["time"],
            account=options["account"],
            mem=options["mem"],
            sbatch_args=tuple(options["sbatch_args"]),
            evaluator=options["evaluator"],
        )
        if options["dry_run"]:
            click.echo(worker_script(job, name, output_root), nl=False)
            if job.evaluator:
                click.echo()
                click.echo(evaluator_script(job, name, output_root), nl=False)
            return
    except ConfigError as exc:
        raise BadInputError(str(exc)) from exc
    from hpo.study.creation import load_study

    load_study(url, name)  # an unknown study is bad input, before anything is submitted
    if url.startswith("sqlite"):
        click.echo(
            f"warning: {masked_url(url)} is SQLite, for one machine: on a cluster, give "
            "HPO_STORAGE a PostgreSQL URL",
            err=True,
        )
    try:
        submitted = submit_study(job, name, output_root, url)
    except ConfigError as exc:
        raise BadInputError(str(exc)) from exc
    except SlurmError as exc:
        raise CommandError(str(exc)) from exc
    workers = submitted[0]
    click.echo(f"submitted {job.workers} workers as Slurm job {workers.job_id} ({workers.script})")
    click.echo(f"  logs: {str(workers.log_pattern).replace('%a', '<task>')}")
    if job.evaluator:
        evaluator = submitted[1]
        click.echo(f"submitted the evaluator as Slurm job {evaluator.job_id}")
        click.echo(f"  log: {evaluator.log_pattern}")
    ids = ",".join(s.job_id for s in submitted)
    click.echo(f"watch: squeue -j {ids}   and   hpo study status --study {name}")
