"""``hpo worker`` and ``hpo launch``: run a study's trials, in this process or in several."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from hpo.cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED
from hpo.cli.options import common_options, example, storage_url, study_option
from hpo.cli.slurm import refuse_slurm_only, slurm_options
from hpo.study.creation import GRACE_PERIOD

LOCAL_WORKERS_ENV = "HPO_LOCAL_WORKERS"
"""How many workers share this machine's cores (``hpo worker --local-workers``)."""


@click.command(
    epilog=example(
        "CUDA_VISIBLE_DEVICES=0 hpo worker --study cluster4 "
        "--storage postgresql+psycopg://hpo@db/hpo"
    )
)
@study_option
@click.option(
    "--worker-index",
    type=click.IntRange(min=0),
    default=None,
    help="offsets the sampler seed, so that workers propose different points  [default: the "
    "next index of the study's counter in the database, never given to another worker]",
)
@click.option(
    "--local-workers",
    type=click.IntRange(min=1),
    envvar=LOCAL_WORKERS_ENV,
    default=1,
    show_default=True,
    help=f"workers sharing this machine's cores, this one included (env {LOCAL_WORKERS_ENV}); "
    "sets the default of --threads",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch  [default: the cores divided by --local-workers, what "
    "`hpo launch` gives each of that many workers]",
)
@click.option(
    "--max-trials",
    type=click.IntRange(min=1),
    default=None,
    help="stop after this many trials here  [default: until the budget is spent]",
)
@click.option(
    "--grace-period",
    type=click.IntRange(min=1),
    default=GRACE_PERIOD,
    show_default=True,
    help="seconds without heartbeat before a trial is failed and retried; also how long an "
    "outage of the database or the artifact store is waited out",
)
@common_options(log_level=logging.INFO)
@click.pass_context
def worker(
    ctx: click.Context,
    name: str,
    worker_index: int | None,
    local_workers: int,
    threads: int | None,
    max_trials: int | None,
    grace_period: int,
    storage: str | None,
    output_root: Path,
) -> None:
    """Run trials of a study until its budget is spent (one worker per GPU).

    Threads: the workers of one machine share its cores. Each uses cores // N torch threads,
    N the workers on the machine: `hpo launch` knows N; a worker started by hand is told by
    --local-workers N (or HPO_LOCAL_WORKERS), and counts itself alone without it.
    """
    from hpo.workers.launch import threads_per_worker
    from hpo.workers.worker import run_worker

    summary = run_worker(
        storage_url(storage),
        name,
        output_root=output_root,
        worker_index=worker_index,
        threads=threads or threads_per_worker(local_workers),
        grace_period=grace_period,
        max_trials=max_trials,
    )
    click.echo(
        f"worker {summary.worker_index}: {len(summary.trials)} trials "
        f"({summary.count('COMPLETE')} complete, {summary.count('PRUNED')} pruned, "
        f"{summary.count('FAIL')} failed)"
        + (" - stopped by signal" if summary.stopped_by_signal else "")
    )
    if summary.stopped_by_signal:
        ctx.exit(EXIT_INTERRUPTED)


def _gpu_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    gpus = [g.strip() for g in value.split(",") if g.strip()]
    if not gpus:
        raise click.BadParameter(f"{value!r} names no GPU; expected ids like 0,1,2,3")
    return gpus


@click.command(
    epilog=example(
        "hpo launch --study cluster4 --gpus 0,1,2,3",
        "hpo launch --study cluster4 --workers 2",
        "hpo launch --study cluster4 --slurm --workers 8 --partition gpu --time 4:00:00 "
        "--evaluator",
    )
)
@study_option
@click.option(
    "--workers",
    "n_workers",
    type=click.IntRange(min=1),
    default=None,
    help="number of workers: one per visible GPU in turn on a GPU machine (nvidia-smi, "
    "CUDA_VISIBLE_DEVICES), else CPU workers sharing the cores",
)
@click.option(
    "--gpus",
    callback=_gpu_list,
    default=None,
    metavar="IDS",
    help="comma-separated GPU ids, one worker each",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads per worker  [default: the cores divided among the workers, GPU workers too]",
)
@slurm_options
@common_options()
@click.pass_context
def launch(
    ctx: click.Context,
    name: str,
    n_workers: int | None,
    gpus: list[str] | None,
    threads: int | None,
    storage: str | None,
    output_root: Path,
    **slurm: Any,
) -> None:
    """Start workers on this machine (--workers N or --gpus IDS) and wait for them.

    With --slurm: submit them as one Slurm array job instead, one task and one GPU each
    (docs/clusters.md, "On a Slurm cluster").
    """
    from rich.console import Console

    from hpo.cli.display import study_progress
    from hpo.study.creation import load_study
    from hpo.workers.launch import (
        assign_gpus,
        build_notices,
        start_workers,
        visible_gpus,
        wait_for_workers,
    )
    from hpo.workers.place import claim_worker_index_block

    if slurm.pop("slurm"):
        from hpo.cli.slurm import launch_on_slurm

        url = storage_url(storage)
        return launch_on_slurm(name, n_workers, gpus, threads, url, output_root, slurm)
    refuse_slurm_only(slurm)
    if (n_workers is None) == (gpus is None):
        raise click.UsageError("give either --workers N or --gpus IDS")
    url = storage_url(storage)
    _, config = load_study(url, name)  # an unknown study is bad input, before any process starts
    if n_workers is not None:
        # on a GPU machine --workers N trains on its GPUs, one device per worker, never the CPU
        # without a word
        found = visible_gpus()
        chosen = assign_gpus(n_workers, found)
        if found:
            gpus, n_workers = [g for g in chosen if g is not None], None
            click.echo(f"{len(gpus)} workers on GPUs {', '.join(gpus)} (visible: {found})")
        else:
            click.echo(f"{n_workers} workers on the CPU (no GPU visible)")
    indexes = claim_worker_index_block(url, name, len(gpus) if gpus else n_workers or 0)
    started = start_workers(
        url,
        name,
        n_workers=n_workers,
        gpus=gpus,
        output_root=output_root,
        threads=threads,
        first_index=indexes.start,
    )
    for w in started:
        click.echo(
            f"worker {w.index} pid {w.process.pid}"
            + (f" gpu {w.gpu}" if w.gpu is not None else "")
            + f" log {w.log_path}"
        )
    console, notices = Console(), build_notices(config.model)

    with study_progress(url, name, console) as refresh:

        def poll() -> None:
            refresh()
            if (line := notices()) is not None:
                console.print(line, highlight=False, soft_wrap=True)

        codes = wait_for_workers(started, poll=poll)
    click.echo(f"workers exited with {codes}")
    if any(codes):
        ctx.exit(EXIT_FAILURE)
