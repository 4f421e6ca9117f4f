"""``hpo evaluate``: evaluate one trial of a study, or one adapter folder, by hand.

The generation flags come from :class:`evaluators.config.EvalConfig`'s fields and their
docstrings; its checks are the only ones. A flag given replaces that field of the study's
``[evaluation]``; the others keep the study's values (EvalConfig's defaults where it sets none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from evaluators.config import EvalConfig
from hpo.cli.dataclass_options import dataclass_options, explicit_values
from hpo.cli.options import (
    STUDY_EVALUATION,
    common_options,
    example,
    storage_url,
    study_option,
)
from hpo.evaluation.service import DEFAULT_LEASE_TTL


@click.command(
    epilog=example(
        "hpo evaluate --study cluster4",
        "hpo evaluate --study cluster4 --trial 0",
        "hpo evaluate --study cluster4 --adapter models/lora_clusters/cluster_04",
        "hpo evaluate --study cluster4 --do-sample --temperature 0.7 --top-p 0.9 --seed 1",
    )
)
@study_option
@click.option(
    "--trial",
    "trial_number",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="the COMPLETE trial to evaluate  [default: the best by eval_loss]",
)
@click.option(
    "--adapter",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="evaluate this adapter folder on the study's cluster instead (never promoted)",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=1),
    default=DEFAULT_LEASE_TTL,
    show_default=True,
    help="seconds a lease lives without renewal (evaluator services take the same leases)",
)
@dataclass_options(EvalConfig, base=STUDY_EVALUATION)
@common_options()
def evaluate(
    name: str,
    trial_number: int | None,
    adapter: Path | None,
    lease_ttl: float,
    storage: str | None,
    output_root: Path,
    **kwargs: Any,
) -> None:
    """Evaluate one trial (or adapter) and the base model on the cluster's test split.

    A trial joins the study's evaluated trials: the best similarity among them is promoted to
    OUTPUT_ROOT/models/STUDY/lora_clusters/cluster_NN, and all of them are listed in
    OUTPUT_ROOT/results/STUDY/cluster_lora/cluster_lora_results.json. The settings are
    the study config's [evaluation]; a flag given replaces that one field.
    """
    from evaluators.trials.records import AdapterReport, PromotionReport
    from hpo.cli.display import print_table, similarity_table
    from hpo.evaluation.by_hand import evaluate_adapter_by_hand, evaluate_trial_by_hand

    if trial_number is not None and adapter is not None:
        raise click.UsageError("give --trial or --adapter, not both")
    url = storage_url(storage)
    options: dict[str, Any] = {
        "output_root": output_root,
        "eval_overrides": explicit_values(EvalConfig, kwargs),
        "lease_ttl": lease_ttl,
    }
    report: AdapterReport | PromotionReport
    if adapter is not None:
        report, path = evaluate_adapter_by_hand(url, name, adapter, **options)
    else:
        report, path = evaluate_trial_by_hand(url, name, trial_number, **options)
    print_table(similarity_table(report, trial_number))
    if isinstance(report, PromotionReport):
        number = report.promoted.trial.trial_number
        click.echo(f"promoted: trial {number} -> {report.promoted_dir}")
    click.echo(f"results: {path}")
