"""``hpo report``: the comparison of every method with the plan's decision."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from evaluators.config import EvalConfig
from hpo.cli.dataclass_options import dataclass_options, explicit_values
from hpo.cli.options import (
    STUDY_EVALUATION,
    common_options,
    example,
    patience_option,
    storage_url,
    study_option,
)
from hpo.study.creation import GRACE_PERIOD


@click.command(epilog=example("hpo report --study cluster4"))
@study_option
@click.option(
    "--png/--no-png", default=True, show_default=True, help="render the PNG (kaleido and Chromium)"
)
@patience_option(GRACE_PERIOD, "the report")
@dataclass_options(EvalConfig, base=STUDY_EVALUATION)
@common_options(log_level=logging.WARNING)
def report(
    name: str,
    png: bool,
    patience: float,
    storage: str | None,
    output_root: Path,
    **kwargs: Any,
) -> None:
    """Write the study's comparison: every evaluated method on the identical test examples,
    the decision rule's branch, comprehensive_comparison.html/.png and a markdown summary
    under OUTPUT_ROOT/results/STUDY/comparison/. Methods not evaluated yet are listed. The
    settings (the minimum effect among them) are the study config's [evaluation]; a flag
    given replaces that one field."""
    from hpo.evaluation.study_report import write_report

    written, files = write_report(
        storage_url(storage),
        name,
        output_root=output_root,
        eval_overrides=explicit_values(EvalConfig, kwargs),
        png=png,
        patience=patience,
    )
    from evaluators.report.rows import label
    from evaluators.report.summary import headline

    decision = written["decision"]
    main = decision["main_result"]
    shown = "none" if main is None else f"{label(main, written['cluster_id'])} ({main})"
    click.echo(f"decision: {headline(written)}")
    click.echo(f"  branch: {decision['branch']}; main result: {shown}")
    for reason in decision["reasons"]:
        click.echo(f"  {reason}")
    for what, path in files.items():
        click.echo(f"{what}: {path}")
