"""Promote a study's best COMPLETE trial and run its full evaluation (the evaluators do the
work; this module only reads the study to find the trial)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

import storage
from evaluators.config import EvalConfig
from evaluators.promotion import PromotedTrial, evaluate_promoted
from hpo.pipeline import load_study_cluster
from hpo.study import load_study


def best_trial_to_promote(study: optuna.Study) -> PromotedTrial:
    """The best COMPLETE trial with its adapter.

    Raises:
        LookupError: The study has no COMPLETE trial yet.
    """
    try:
        trial = study.best_trial
    except ValueError as exc:
        raise LookupError(
            f"study {study.study_name!r} has no COMPLETE trial yet; run workers first"
        ) from exc
    assert trial.value is not None
    return PromotedTrial(
        study_name=study.study_name,
        trial_number=trial.number,
        eval_loss=trial.value,
        params=dict(trial.params),
        adapter_path=Path(trial.user_attrs["adapter_path"]),
        adapter_sha256=trial.user_attrs["adapter_sha256"],
    )


def evaluate_best(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    eval_config: EvalConfig = EvalConfig(),
) -> tuple[dict[str, Any], Path]:
    """Promote the best trial of the study and evaluate it against the base model.

    Args:
        url: The storage URL.
        study_name: The study whose best trial to promote.
        output_root: Where ``models/`` and ``results/`` go.
        eval_config: How replies are generated (batching, lengths, decoding).

    Returns:
        The report and the path of ``results/cluster_lora/cluster_lora_results.json``.
    """
    from trainers.base_model import load_base_model

    study, config = load_study(url, study_name)
    trial = best_trial_to_promote(study)
    engine = storage.open_storage(url)
    section = config.study
    cluster = load_study_cluster(engine, section)
    base = load_base_model(config.model)
    return evaluate_promoted(
        engine,
        storage.OutputLayout(Path(output_root).resolve()),
        trial,
        base=base,
        dataset_id=cluster.dataset_id,
        clustering_id=cluster.clustering_id,
        cluster_id=section.cluster_id,
        personas=cluster.personas,
        embedding_model=section.embedding_model,
        eval_config=eval_config,
    )
