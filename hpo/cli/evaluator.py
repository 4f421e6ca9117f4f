"""``hpo evaluator``: the evaluator service beside the workers (``--watch``), or one round
(``--once``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from evaluators.config import EvalConfig
from hpo.cli.dataclass_options import dataclass_options, explicit_values
from hpo.cli.errors import CommandError
from hpo.cli.options import (
    STUDY_EVALUATION,
    common_options,
    example,
    patience_option,
    storage_url,
    study_option,
)
from hpo.evaluation.service import DEFAULT_LEASE_TTL, DEFAULT_POLL_INTERVAL, DEFAULT_TOP_K
from hpo.study.creation import GRACE_PERIOD


@click.command(
    epilog=example(
        "hpo evaluator --study cluster4 --watch --storage postgresql+psycopg://hpo@db/hpo",
        "hpo evaluator --study cluster4 --once --top-trials 5",
        "hpo evaluator --study cluster4 --watch --until-done",
    )
)
@study_option
@click.option(
    "--watch/--once",
    default=True,
    show_default=True,
    help="keep polling the study, or evaluate what is due now and exit",
)
@click.option(
    "--until-done",
    is_flag=True,
    help="with --watch: exit once the study's budget is spent, no trial runs or waits, and "
    "its top trials are evaluated (for a scheduler's job: hpo launch --slurm --evaluator)",
)
@click.option(
    "--top-trials",
    "top_trials",
    type=click.IntRange(min=1),
    default=DEFAULT_TOP_K,
    show_default=True,
    metavar="K",
    help="evaluate the best K COMPLETE trials by eval_loss (eval_loss rank is not similarity rank)",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_POLL_INTERVAL,
    show_default=True,
    help="seconds between passes with --watch",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=1),
    default=DEFAULT_LEASE_TTL,
    show_default=True,
    help="seconds a lease lives without renewal: a killed evaluator's work is taken over "
    "after this long",
)
@patience_option(GRACE_PERIOD, "the evaluator")
@dataclass_options(EvalConfig, base=STUDY_EVALUATION)
@common_options(log_level=logging.INFO)
def evaluator(
    name: str,
    watch: bool,
    until_done: bool,
    top_trials: int,
    poll_interval: float,
    lease_ttl: float,
    patience: float,
    storage: str | None,
    output_root: Path,
    **kwargs: Any,
) -> None:
    """Evaluate a study's top trials as they come and promote the best similarity.

    Several evaluators may run at once, on any machines: each trial is evaluated by one of
    them (a lease in the database). Results: OUTPUT_ROOT/results/STUDY/cluster_lora/.
    --once ends with the similarity table that `hpo evaluate` prints (the study's, as it
    stands); --watch prints a line per trial it evaluates and per promotion. The settings
    are the study config's [evaluation]; a flag given replaces that one field.
    """
    from hpo.cli.display import print_table, similarity_table
    from hpo.evaluation.service import open_evaluator, run_evaluator

    service = open_evaluator(
        storage_url(storage),
        name,
        output_root=output_root,
        eval_overrides=explicit_values(EvalConfig, kwargs),
        top_k=top_trials,
        lease_ttl=lease_ttl,
        patience=patience,
    )
    on_pass = (lambda done: _print_pass(service, done)) if watch else None
    result = run_evaluator(
        service,
        once=not watch,
        poll_interval=poll_interval,
        until_done=until_done,
        on_pass=on_pass,
    )
    click.echo(f"evaluated here: {', '.join(result.evaluated) or 'nothing'}")
    for line in result.broken.values():  # one trial each, not the service
        click.echo(line)
    if not watch:
        # the table `hpo evaluate` prints: this run's report, or the study's as it stands
        found = (result.report, result.results) if result.report is not None else None
        found = found or service.promote(force=True)
        if found is None:
            click.echo(f"study {name!r} has no evaluated COMPLETE trial yet: no table to show")
        else:
            print_table(similarity_table(found[0]))
            click.echo(f"promoted: trial {found[0].promoted.trial.trial_number}")
            click.echo(f"results: {found[1]}")
    elif result.results is not None:
        click.echo(f"results: {result.results}")
    if result.failed:
        raise CommandError(
            f"skipped {', '.join(result.failed)}: adapter missing or changed (see the log)"
        )


def _print_pass(service: Any, done: Any) -> None:
    """One line per trial a ``--watch`` pass evaluated, and one when it promoted."""
    from hpo.evaluation.records import trial_evaluations
    from hpo.study.promoted import TrialSimilarity

    trials = [t for t in done.evaluated if t.startswith("trial:")]
    figures = trial_evaluations(service.engine, service.study) if trials else {}
    for target in trials:
        number = int(target.removeprefix("trial:"))
        found = figures.get(number, {})
        ci = found.get("similarity_ci")
        line = TrialSimilarity(
            number, found.get("similarity"), tuple(ci) if ci else None, found.get("eval_loss")
        ).describe()
        click.echo(f"evaluated {line}")
    if done.report is not None:
        promoted = done.report.promoted
        chosen = TrialSimilarity(promoted.trial.trial_number, promoted.result.mean_similarity)
        click.echo(f"promoted {chosen.describe()}: {done.report.promoted_dir}")
