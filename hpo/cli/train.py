"""``hpo train``: one training run on one cluster, with the flags of the original script.

Every flag but ``--out`` comes from a config dataclass: the cluster from
:class:`hpo.study.config.StudySection`, the hyperparameters from
:class:`trainers.config.TrainConfig` (with its nested :class:`~trainers.config.DataConfig`), the
base model from :class:`~trainers.config.ModelConfig`; defaults and help are theirs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hpo.cli.dataclass_options import build_dataclass, dataclass_options
from hpo.cli.options import common_options, example, storage_url
from hpo.study.config import StudySection
from trainers.config import ModelConfig, TrainConfig


@click.command(
    epilog=example(
        "hpo train --dataset demo --cluster-id 4 --epochs 5 --batch-size 2 --lr 2e-4 --rank 8"
    )
)
@dataclass_options(
    StudySection, include=("dataset", "k", "cluster_id", "clustering_seed", "embedding_model")
)
@dataclass_options(
    TrainConfig,
    rename={
        "learning_rate": ("--learning-rate", "--lr"),
        "lora_rank": ("--lora-rank", "--rank"),
    },
)
@dataclass_options(
    ModelConfig,
    include=(
        "base_model",
        "device",
        "trust_remote_code",
        "attn_implementation",
        "gradient_checkpointing",
        "prompt_format",
    ),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="adapter directory  [default: OUTPUT_ROOT/models/lora_clusters/cluster_NN]",
)
@common_options()
def train(out: Path | None, storage: str | None, output_root: Path, **kwargs: Any) -> None:
    """Train one cluster adapter with the given hyperparameters."""
    import storage as storage_package
    from hpo.datasets import load_study_cluster, train_cluster_adapter

    section = build_dataclass(StudySection, kwargs)
    config = build_dataclass(TrainConfig, kwargs)
    model = build_dataclass(ModelConfig, kwargs)
    _check_base_model(model, config)
    cluster = load_study_cluster(storage_package.open_storage(storage_url(storage)), section)
    layout = storage_package.OutputLayout(output_root.resolve())  # uses no shared store
    target = out or layout.cluster_adapter_dir(section.cluster_id)
    log_path = layout.log_path(f"train-cluster-{section.cluster_id:02d}")
    result = train_cluster_adapter(cluster, config, model, target, log_path=log_path)
    click.echo(
        f"eval_loss {result.final_eval_loss:.4f} after {result.train_steps} steps "
        f"({result.seconds:.0f} s); adapter: {target}; log: {log_path}"
    )


def _check_base_model(model: ModelConfig, config: TrainConfig) -> None:
    """Refuse a base model the run could not train (exit 2), before any data is read."""
    from hpo.cli.errors import BadInputError
    from trainers.model_check import check_base_model

    try:
        check_base_model(model, target_modules=config.target_modules)
    except ValueError as exc:
        raise BadInputError(str(exc)) from exc
