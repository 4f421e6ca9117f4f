"""``hpo personas train``: one adapter per persona of a study's cluster, as a study of its own."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from hpo.cli.options import common_options, example, storage_url, study_option


@click.group()
def personas() -> None:
    """Per-persona adapters (the sources of the MoE merge)."""


@personas.command(
    epilog=example(
        "hpo personas train --study cluster4",
        "hpo personas train --study cluster4 --epochs 2 --max-train-per-persona 8",
    )
)
@study_option
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="override the epochs  [default: the promoted trial's]",
)
@click.option(
    "--max-train-per-persona",
    type=click.IntRange(min=1),
    default=None,
    help="cap each persona's train examples  [default: the study's cap]",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch")
@common_options(log_level=logging.INFO)
def train(
    name: str,
    epochs: int | None,
    max_train_per_persona: int | None,
    threads: int | None,
    storage: str | None,
    output_root: Path,
    **_: Any,
) -> None:
    """Train one adapter per persona of the study's cluster, with fixed hyperparameters (by
    default the promoted trial's), as the Optuna study STUDY-personas: one enqueued trial per
    persona, with heartbeats and retries. Run it on several machines to share the queue; a
    persona whose adapter exists with a matching config hash is skipped."""
    from hpo.personas.training import train_persona_adapters

    overrides = {
        k: v
        for k, v in (("epochs", epochs), ("max_train_per_persona", max_train_per_persona))
        if v is not None
    }
    summary = train_persona_adapters(
        storage_url(storage), name, output_root=output_root, overrides=overrides, threads=threads
    )
    click.echo(
        f"{summary.study_name}: {summary.n_personas} personas, hyperparameters from "
        f"{summary.source}; {summary.already_done} already done, {len(summary.trained)} "
        f"trained, {len(summary.reused)} reused, {len(summary.failed)} failed here"
    )
