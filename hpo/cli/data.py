"""``hpo data``: generate, import and cluster persona datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hpo.cli.dataclass_options import build_dataclass, dataclass_options, dataclass_values
from hpo.cli.options import common_options, example, storage_url
from hpo.demo import DemoOptions
from hpo.study.config import StudySection
from trainers.data import SplitConfig
from trainers.formats import FORMATS


@click.group()
def data() -> None:
    """Generate, import and cluster persona datasets."""


@data.command(
    epilog=example(
        "hpo data generate --out data/demo.jsonl --personas 200 --examples 40",
        "hpo data generate --out data/control.jsonl --negative-control",
    )
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSONL path  [default: OUTPUT_ROOT/data/demo_personas.jsonl, or "
    "demo-negative_personas.jsonl with --negative-control]",
)
@dataclass_options(
    DemoOptions,
    include=("personas", "examples", "seed", "plant_strength", "negative_control"),
)
@common_options()
def generate(out: Path | None, output_root: Path, storage: str | None, **kwargs: Any) -> None:
    """Write the demo persona dataset (JSONL), deterministic by seed, as `hpo demo` does: by
    default with a planted trait in the largest archetype's replies (docs/evaluation.md)."""
    from trainers.tiny import write_demo_dataset

    options = build_dataclass(DemoOptions, kwargs)
    path = out or output_root / "data" / f"{options.dataset}_personas.jsonl"
    write_demo_dataset(
        path,
        n_personas=options.personas,
        examples_per_persona=options.examples,
        seed=options.seed,
        plant=options.plant,
    )
    click.echo(
        f"wrote {options.personas} personas x {options.examples} examples to {path}; "
        f"planted: {options.plant.describe()}"
    )


@data.command(
    name="import",
    epilog=example(
        "hpo data import data/demo.jsonl --name demo",
        "hpo data import tests/data/synthetic-persona-chat/Synthetic-Persona-Chat_valid.csv "
        "--name spc --min-examples 12",
    ),
)
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="dataset name  [default: the file's stem]")
@click.option(
    "--format",
    "format_",
    type=click.Choice(sorted(FORMATS)),
    default=None,
    help="the file's format  [default: detected from the file]",
)
@click.option(
    "--min-examples",
    type=click.IntRange(min=1),
    default=None,
    help="drop personas with fewer examples than this  [default: keep all; a persona too "
    "small for the split is then an error]",
)
@dataclass_options(SplitConfig, rename={"seed": "--split-seed"})
@common_options()
def import_(
    path: Path,
    name: str | None,
    format_: str | None,
    min_examples: int | None,
    storage: str | None,
    output_root: Path,
    **kwargs: Any,
) -> None:
    """Validate a dataset file (PATH: our JSONL, the Synthetic-Persona-Chat CSV or the
    PersonaChat/ConvAI2 text format; see docs/config.md) and store it with a deterministic
    train/val/test split. Ends with one summary line: personas kept and dropped, examples per
    split, lines skipped."""
    import storage as storage_package
    from hpo.datasets import import_dataset

    split = build_dataclass(SplitConfig, kwargs)
    summary = import_dataset(
        storage_package.open_storage(storage_url(storage)),
        path,
        name=name,
        split=split,
        format=format_,
        min_examples=min_examples,
    )
    click.echo(summary.load.line())
    click.echo(
        f"dataset {summary.name!r}: {summary.n_personas} personas, {summary.n_examples} "
        f"examples, sha256 {summary.sha256[:12]}"
    )


@data.command(epilog=example("hpo data cluster --dataset demo --k 5"))
@click.option("--dataset", required=True, help="an imported dataset name")
@dataclass_options(
    StudySection,
    include=("k", "clustering_seed", "embedding_model"),
    rename={"clustering_seed": "--seed"},
)
@common_options()
def cluster(dataset: str, storage: str | None, output_root: Path, **kwargs: Any) -> None:
    """Embed persona texts and cluster them with KMeans; prints the cluster table."""
    import storage as storage_package
    from hpo.cli.display import cluster_table, print_table
    from hpo.datasets import cluster_dataset

    # A study's section would also check a cluster id against k; here only its defaults count.
    values = dataclass_values(StudySection, kwargs)
    k = values["k"]
    if k < 2:
        raise click.BadParameter(f"{k} clusters: expected k >= 2", param_hint="'--k'")
    _, result = cluster_dataset(
        storage_package.open_storage(storage_url(storage)),
        dataset,
        k=k,
        seed=values["clustering_seed"],
        embedding_model=values["embedding_model"],
    )
    print_table(
        cluster_table(result.clusters, result.silhouette, f"dataset {dataset}: KMeans k={k}")
    )
