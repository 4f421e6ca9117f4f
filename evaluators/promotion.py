"""Promotion of a study's best trial: copy its adapter to the cluster's place, evaluate it
and the base model on the identical test examples, and write the results file."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storage
from evaluators.config import EvalConfig
from evaluators.evaluation import (
    EvalItem,
    MethodResult,
    RunKey,
    compare_methods,
    eval_items,
    evaluate_method,
)
from evaluators.similarity import reference_ceiling
from trainers.embedding import DEFAULT_EMBEDDING_MODEL

CLUSTER_ADAPTER_KIND = "cluster_adapter"
RESULTS_KIND = "cluster_lora"
RESULTS_FILE = "cluster_lora_results.json"


@dataclass(frozen=True)
class PromotedTrial:
    """The trial to promote, as the hpo package found it."""

    study_name: str
    trial_number: int
    eval_loss: float
    params: dict[str, Any]
    adapter_path: Path
    adapter_sha256: str


def promote_adapter(
    engine: Any, layout: storage.OutputLayout, trial: PromotedTrial, cluster_id: int
) -> Path:
    """Copy the trial's adapter to ``models/lora_clusters/cluster_NN/`` atomically.

    Raises:
        ValueError: If the trial's adapter is missing or its sha256 no longer matches.
    """
    source = Path(trial.adapter_path)
    if not source.is_dir():
        raise ValueError(f"adapter of trial {trial.trial_number} is missing: {source}")
    digest, _ = storage.directory_sha256(source)
    if digest != trial.adapter_sha256:
        raise ValueError(
            f"adapter of trial {trial.trial_number} at {source} is corrupt: "
            f"sha256 {digest} != recorded {trial.adapter_sha256}"
        )
    target = layout.cluster_adapter_dir(cluster_id)
    with storage.atomic_directory(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        (tmp / "promoted_from.json").write_text(
            json.dumps(
                {
                    "study": trial.study_name,
                    "trial": trial.trial_number,
                    "eval_loss": trial.eval_loss,
                    "params": trial.params,
                },
                indent=2,
            )
        )
    digest, size = storage.directory_sha256(target)
    with storage.session_scope(engine) as session:
        storage.record_artifact(
            session,
            kind=CLUSTER_ADAPTER_KIND,
            path=target,
            sha256=digest,
            size_bytes=size,
            study_name=trial.study_name,
            trial_number=trial.trial_number,
        )
    return target


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    with storage.atomic_file(path) as out:
        json.dump(data, out, indent=2)


def evaluate_promoted(
    engine: Any,
    layout: storage.OutputLayout,
    trial: PromotedTrial,
    *,
    base: Any,
    dataset_id: int,
    clustering_id: int | None,
    cluster_id: int,
    personas: list[Any],
    embedding_model: str | None = None,
    eval_config: EvalConfig = EvalConfig(),
) -> tuple[dict[str, Any], Path]:
    """Evaluate the promoted adapter and the bare base model on the cluster's test examples.

    Both are generated with ``eval_config``, scored on the identical examples, and compared
    paired by persona (see :func:`evaluators.evaluation.compare_methods`).

    Returns:
        The report (also written to ``results/cluster_lora/cluster_lora_results.json``) and
        the path of that file.
    """
    adapter_dir = promote_adapter(engine, layout, trial, cluster_id)
    items: list[EvalItem] = eval_items(personas, "test")
    if not items:
        raise ValueError(f"cluster {cluster_id} has no test examples")
    methods: dict[str, MethodResult] = {}
    for method, adapter, number in (
        ("cluster_lora", adapter_dir, trial.trial_number),
        ("base_model", None, -1),
    ):
        key = RunKey(
            study_name=trial.study_name,
            method=method,
            dataset_id=dataset_id,
            clustering_id=clustering_id,
            cluster_id=cluster_id,
            trial_number=number,
            eval_config=eval_config,
        )
        methods[method] = evaluate_method(
            engine,
            key,
            base,
            items,
            adapter_dir=adapter,
            embedding_model=embedding_model,
        )
    lora, bare = methods["cluster_lora"], methods["base_model"]
    report = {
        "study": trial.study_name,
        "cluster_id": cluster_id,
        "best_trial": {
            "number": trial.trial_number,
            "eval_loss": trial.eval_loss,
            "params": trial.params,
            "adapter": str(adapter_dir),
        },
        "embedding_model": embedding_model or DEFAULT_EMBEDDING_MODEL,
        "eval_config": eval_config.to_dict(),
        "eval_config_key": eval_config.key,
        "n_personas": len(lora.per_persona),
        "n_test_examples": len(items),
        "reference_ceiling": reference_ceiling(
            [it.reference for it in items], [it.persona_key for it in items], embedding_model
        ),
        "methods": {name: result.to_dict() for name, result in methods.items()},
        "difference_percent_points": round(100 * (lora.mean_similarity - bare.mean_similarity), 2),
        "comparisons": compare_methods(methods, [("cluster_lora", "base_model")]),
    }
    path = layout.results_file(RESULTS_KIND, RESULTS_FILE)
    write_json(path, report)
    return report, path
