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
        "hpo launch --study cluster4 --workers-per-gpu 2",
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
    help="comma-separated GPU ids, one worker each (--workers-per-gpu N: N each)",
)
@click.option(
    "--workers-per-gpu",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="N workers on each GPU of --gpus, or alone on each visible GPU, each pinned to it "
    "(a small model leaves a card idle); warns when N copies of the base model's weights "
    "exceed a card's memory  [default: 1]",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads per worker  [default: the cores divided among the workers, GPU workers too]",
)
@click.option(
    "--grace-period",
    type=click.IntRange(min=1),
    default=None,
    help="each worker's --grace-period (seconds without heartbeat before a trial is retried, "
    "and how long a worker waits out an outage of the database); the launcher itself stays "
    f"with its workers through any outage  [default: {GRACE_PERIOD}]",
)
@slurm_options
@common_options()
@click.pass_context
def launch(
    ctx: click.Context,
    name: str,
    n_workers: int | None,
    gpus: list[str] | None,
    workers_per_gpu: int | None,
    threads: int | None,
    grace_period: int | None,
    storage: str | None,
    output_root: Path,
    **slurm: Any,
) -> None:
    """Start workers on this machine (--workers N, --gpus IDS or --workers-per-gpu N) and
    supervise them until the last one exits.

    The launcher stays through database outages, passes SIGTERM and Ctrl-C on to its workers
    (each re-queues its running trial) and prints one line per worker with its exit code;
    it exits 0 when every worker did, 130 when stopped by a signal, else 1.

    With --slurm: submit them as one Slurm array job instead, one task and one GPU each
    (docs/clusters.md, "On a Slurm cluster").
    """
    from rich.console import Console

    import storage as storage_package
    from hpo.cli.display import study_progress
    from hpo.study.creation import load_study
    from hpo.study.queries import study_status
    from hpo.workers.gpus import gpu_memory, plan_devices, visible_gpus, weights_warning
    from hpo.workers.launch import (
        build_notices,
        exit_line,
        patient_poll,
        start_workers,
        stop_signals,
        supervise,
    )
    from hpo.workers.place import claim_worker_index_block

    if slurm.pop("slurm"):
        from hpo.cli.slurm import launch_on_slurm

        local_only = {"--workers-per-gpu": workers_per_gpu, "--grace-period": grace_period}
        for flag, value in local_only.items():
            if value is not None:
                raise click.UsageError(f"{flag} is for workers on this machine, not with --slurm")
        url = storage_url(storage)
        return launch_on_slurm(name, n_workers, gpus, threads, url, output_root, slurm)
    refuse_slurm_only(slurm)
    if n_workers is None and gpus is None and workers_per_gpu is None:
        raise click.UsageError("give either --workers N or --gpus IDS (or --workers-per-gpu N)")
    visible = visible_gpus() if gpus is None else []
    try:
        devices = plan_devices(
            n_workers=n_workers, gpus=gpus, per_gpu=workers_per_gpu or 1, visible=visible
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    url = storage_url(storage)
    _, config = load_study(url, name)  # an unknown study is bad input, before any process starts
    on_gpus = [d for d in devices if d is not None]
    if on_gpus:
        # on a GPU machine --workers N trains on its GPUs, never the CPU without a word
        per = f", {workers_per_gpu} per GPU" if workers_per_gpu else ""
        seen = f" (visible: {visible})" if visible else ""
        click.echo(f"{len(on_gpus)} workers on GPUs {', '.join(on_gpus)}{per}{seen}")
        if (warning := weights_warning(devices, config.model, gpu_memory())) is not None:
            click.echo(warning, err=True)
    else:
        click.echo(f"{len(devices)} workers on the CPU (no GPU visible)")
    with stop_signals() as received:  # from here on a signal never leaves a worker behind
        indexes = claim_worker_index_block(url, name, len(devices))
        total = study_status(url, name).n_trials_target  # read now: the progress needs no database
        if received:  # stopped before any worker started
            ctx.exit(EXIT_INTERRUPTED)
        started = start_workers(
            url,
            name,
            n_workers=None if on_gpus else len(devices),
            gpus=on_gpus or None,
            output_root=output_root,
            threads=threads,
            first_index=indexes.start,
            grace_period=grace_period,
        )
        for w in started:
            click.echo(
                f"worker {w.index} pid {w.process.pid}"
                + (f" gpu {w.gpu}" if w.gpu is not None else "")
                + f" log {w.log_path}"
            )
        console, notices = Console(), build_notices(config.model)

        def say(line: str) -> None:
            console.print(line, highlight=False, soft_wrap=True)

        guard = storage_package.OutageGuard(
            url, patience=grace_period or GRACE_PERIOD, waiter=LAUNCH_WAITER
        )
        with study_progress(url, name, console, total=total) as refresh:

            def poll() -> None:
                refresh()
                if (line := notices()) is not None:
                    say(line)

            ended = supervise(started, poll=patient_poll(poll, guard, say), received=received)
    for w, code in zip(started, ended.codes, strict=True):
        click.echo(exit_line(w, code))
    if not ended.succeeded:
        ctx.exit(EXIT_INTERRUPTED if ended.signal is not None else EXIT_FAILURE)


LAUNCH_WAITER = "the workers wait (their --grace-period)"
"""Who waits that long, in the launcher's line past the patience."""
