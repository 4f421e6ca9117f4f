"""``hpo moe merge`` / ``hpo moe evaluate``: the MoE sparse merge of the per-persona adapters."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from evaluators.config import EvalConfig
from evaluators.moe.router import DEFAULT_K, DEFAULT_TEMPERATURE, WEIGHTINGS
from evaluators.moe.run import MoeSettings
from hpo.cli.dataclass_options import dataclass_options, explicit_values
from hpo.cli.options import (
    STUDY_EVALUATION,
    common_options,
    example,
    storage_url,
    study_option,
)


@click.group()
def moe() -> None:
    """MoE sparse merge: route each persona to its k nearest personas and merge their adapters."""


@moe.command(epilog=example("hpo moe merge --study cluster4 --k 5"))
@study_option
@click.option(
    "--k",
    type=click.IntRange(min=1),
    default=DEFAULT_K,
    show_default=True,
    help="adapters merged per target persona",
)
@click.option(
    "--weighting",
    type=click.Choice(WEIGHTINGS),
    default="softmax",
    show_default=True,
    help="router weights",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TEMPERATURE,
    show_default=True,
    help="softmax temperature",
)
@common_options(log_level=logging.INFO)
def merge(
    name: str,
    k: int,
    weighting: str,
    temperature: float,
    storage: str | None,
    output_root: Path,
    **_: Any,
) -> None:
    """Merge both variants (with the persona's own adapter, and cold start) for every persona
    of the study's cluster. Adapters: OUTPUT_ROOT/models/STUDY/moe_*/; routes and weights:
    OUTPUT_ROOT/results/STUDY/moe/moe_sparse_results.json."""
    from hpo.personas.moe import merge_moe

    settings = MoeSettings(k=k, weighting=weighting, temperature=temperature)
    data, path = merge_moe(storage_url(storage), name, output_root=output_root, settings=settings)
    click.echo(f"merged {data['n_personas']} personas x {len(data['variants'])} variants: {path}")


@moe.command(epilog=example("hpo moe evaluate --study cluster4"))
@study_option
@click.option(
    "--per-persona/--no-per-persona",
    default=True,
    show_default=True,
    help="also evaluate each persona with its own adapter",
)
@dataclass_options(EvalConfig, base=STUDY_EVALUATION)
@common_options(log_level=logging.INFO)
def evaluate(
    name: str,
    per_persona: bool,
    storage: str | None,
    output_root: Path,
    **kwargs: Any,
) -> None:
    """Evaluate the merged variants on the study's test examples (resumable) and add their
    scores to moe_sparse_results.json. The settings are the study config's [evaluation]; a
    flag given replaces that one field."""
    from hpo.personas.moe import evaluate_moe

    data, path = evaluate_moe(
        storage_url(storage),
        name,
        output_root=output_root,
        eval_overrides=explicit_values(EvalConfig, kwargs),
        per_persona=per_persona,
    )
    for method, row in data["evaluation"].items():
        click.echo(f"{method}: similarity {row['similarity_percent']:.2f}%")
    click.echo(f"results: {path}")
