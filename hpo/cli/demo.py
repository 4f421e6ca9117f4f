"""``hpo demo``: the whole flow on the embedded default. Its numbers are
:class:`hpo.demo.DemoOptions`'s defaults, in one place."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from hpo.cli.dataclass_options import build_dataclass, dataclass_options
from hpo.cli.options import common_options, example
from hpo.demo import DemoOptions


@click.command(
    epilog=example(
        "hpo demo --output-root demo_run --n-trials 12",
        "hpo demo --output-root demo_run --negative-control",
    )
)
@dataclass_options(DemoOptions, exclude=("output_root", "storage_url"))
@common_options(output_root=DemoOptions.output_root)
def demo(storage: str | None, output_root: Path, **kwargs: Any) -> None:
    """The whole flow on the embedded default: data with a planted effect (--negative-control:
    none), clusters, a study run by workers, the evaluator with its baselines, per-persona
    adapters and the MoE merge, and the report with its decision.

    Files go to OUTPUT_ROOT (demo_run/ unless --output-root or HPO_OUTPUT_ROOT says
    otherwise); the database is OUTPUT_ROOT/hpo.db unless --storage or HPO_STORAGE names
    another. A second run resumes: finished trials and evaluations are reused.
    """
    from hpo.demo import run_demo

    options = build_dataclass(DemoOptions, kwargs)
    run_demo(dataclasses.replace(options, output_root=output_root, storage_url=storage))
