"""Evaluation of a study's trials in one scope: the trial candidates, the scope all their
evaluations share, and the evaluations themselves.

- :func:`evaluate_trial` scores one trial's own adapter on the cluster's test examples;
- :func:`evaluate_baselines` scores what every trial is compared with, once per study;
- :func:`evaluated_trials` and :func:`baselines_evaluated` say what is done.

Every evaluation is an evaluation run of :mod:`evaluators.scoring.method_run`: stored batch by
batch, resumable, keyed by study, method, trial and :class:`~evaluators.config.EvalConfig`, so an
evaluation is never stored twice and one study's never touches another's. Promotion of the best
evaluated trial is :mod:`evaluators.trials.promotion`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storage
from evaluators.config import EvalConfig
from evaluators.scoring.method_run import (
    EvalItem,
    MethodResult,
    RunKey,
    eval_items,
    evaluate_method,
)
from evaluators.scoring.similarity import normalized
from trainers.config import ModelConfig

TRIAL_METHOD = "cluster_lora"
"""Method name of a trial's adapter (the promoted one keeps it in the results file)."""
BASE_METHOD = "base_model"
"""Method name of the base model with no adapter."""
ADAPTER_METHOD_PREFIX = "adapter-"
"""Method name of an adapter evaluated by hand: the prefix and 12 hex digits of its sha256."""


@dataclass(frozen=True)
class BaselineTraining:
    """What the trained baselines (the unified and the cluster-0 adapter) need, beside the
    scope: the personas they train on and the hyperparameters they train with."""

    layout: storage.OutputLayout
    """Where the baseline adapters are saved (``models/<study>/baselines/<name>``)."""
    all_personas: Sequence[Any]
    """Every persona of the dataset: the unified adapter's training data, and the candidates
    of the persona swap."""
    cluster0_personas: Sequence[Any] | None
    """Cluster 0's personas, or None to skip the cluster-0 adapter."""
    train_config: Any
    """The :class:`trainers.config.TrainConfig` of the trial whose hyperparameters they use."""
    source_trial: int | None = None
    """That trial's number, recorded with the adapters."""


@dataclass(frozen=True)
class PromotedTrial:
    """A COMPLETE trial and its adapter, as the hpo package found it: a candidate for
    evaluation and promotion."""

    study_name: str
    trial_number: int
    eval_loss: float
    params: dict[str, Any]
    adapter_path: Path
    adapter_sha256: str


@dataclass(frozen=True)
class EvalScope:
    """What all evaluations of one study share: the study, its cluster's test examples, the
    embedding model that scores them and the settings replies are generated with."""

    study_name: str
    """The study; its name keys the evaluation runs and names the output folders."""
    dataset_id: int
    """The dataset of the examples."""
    clustering_id: int | None
    """The clustering the cluster belongs to."""
    cluster_id: int
    """The evaluated cluster."""
    personas: Sequence[Any]
    """The cluster's personas with their examples, as stored."""
    embedding_model: str | None = None
    """The model that scores similarity; None for the packaged default."""
    eval_config: EvalConfig = EvalConfig()
    """How replies are generated (part of every run's key)."""
    model: ModelConfig | None = None
    """The study's base model (named in the promoted adapter's card and ``promoted_from.json``);
    None where not known."""
    dataset: str | None = None
    """The dataset's name, for people (the promoted adapter's card)."""
    baseline_training: BaselineTraining | None = None
    """Set to evaluate the full set of baselines of :mod:`evaluators.baselines.suite` (unified and
    cluster-0 adapters, copy-persona, reference ceiling, persona swap); None: the base model
    only."""

    def items(self) -> list[EvalItem]:
        """The cluster's test examples, with their prompts.

        Raises:
            ValueError: If the cluster has no test examples.
        """
        items = eval_items(self.personas, "test")
        if not items:
            raise ValueError(f"cluster {self.cluster_id} has no test examples")
        return items

    def run_key(self, method: str, trial_number: int = storage.NO_TRIAL) -> RunKey:
        """The key of one method's evaluation run in this scope."""
        return RunKey(
            study_name=self.study_name,
            method=method,
            dataset_id=self.dataset_id,
            clustering_id=self.clustering_id,
            cluster_id=self.cluster_id,
            trial_number=trial_number,
            eval_config=self.eval_config,
        )


def check_adapter(trial: PromotedTrial) -> None:
    """Refuse a trial whose adapter is gone or is no longer the one that was recorded.

    Raises:
        ValueError: If the adapter directory is missing or its sha256 changed.
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


def evaluate_trial(
    engine: Any, scope: EvalScope, trial: PromotedTrial, *, base: Any
) -> MethodResult:
    """Evaluate one trial's own adapter on the scope's test examples (resumable).

    Raises:
        ValueError: If the trial is of another study, or its adapter is missing or changed.
    """
    if trial.study_name != scope.study_name:
        raise ValueError(
            f"trial {trial.trial_number} is of study {trial.study_name!r}, not {scope.study_name!r}"
        )
    check_adapter(trial)
    return evaluate_method(
        engine,
        scope.run_key(TRIAL_METHOD, trial.trial_number),
        base,
        scope.items(),
        adapter_dir=Path(trial.adapter_path),
        embedding_model=scope.embedding_model,
    )


def evaluate_baselines(engine: Any, scope: EvalScope, *, base: Any) -> dict[str, MethodResult]:
    """Evaluate what every trial of the study is compared with, on the identical examples.

    Called once per study, under the evaluator's ``baselines`` lease; calls after the first
    read the stored runs back (trained baseline adapters are reused by sha256 and training
    hash). With ``scope.baseline_training`` set, that is every baseline of
    :mod:`evaluators.baselines.suite`; otherwise the base model alone. The base model is evaluated
    last, so that its complete run (:func:`baselines_evaluated`) means all are done.

    Returns:
        The results by method name.
    """
    from evaluators.baselines import suite as baselines

    results: dict[str, MethodResult] = {}
    training = scope.baseline_training
    if training is not None:
        setup = baselines.BaselineSetup(
            study_name=scope.study_name,
            dataset_id=scope.dataset_id,
            clustering_id=scope.clustering_id,
            cluster_id=scope.cluster_id,
            personas=scope.personas,
            eval_config=scope.eval_config,
            embedding_model=scope.embedding_model,
        )
        results.update(
            baselines.evaluate_baselines(
                engine,
                training.layout,
                setup,
                base,
                all_personas=training.all_personas,
                cluster0_personas=training.cluster0_personas,
                train_config=training.train_config,
                source_trial=training.source_trial,
                include_base=False,
            )
        )
    results[BASE_METHOD] = evaluate_method(
        engine,
        scope.run_key(BASE_METHOD),
        base,
        scope.items(),
        adapter_dir=None,
        embedding_model=scope.embedding_model,
    )
    return {BASE_METHOD: results.pop(BASE_METHOD), **results}


def _complete_runs(engine: Any, scope: EvalScope) -> list[storage.RunInfo]:
    with storage.session_scope(engine) as session:
        runs = storage.list_evaluation_runs(session, scope.study_name)
    return [
        r
        for r in runs
        if r.status == "complete" and r.cluster_id == scope.cluster_id and r.split == "test"
    ]


def evaluated_trials(engine: Any, scope: EvalScope) -> set[int]:
    """The trial numbers whose adapter has a complete evaluation in this scope."""
    method = scope.run_key(TRIAL_METHOD).stored_method
    return {r.trial_number for r in _complete_runs(engine, scope) if r.method == method}


def baselines_evaluated(engine: Any, scope: EvalScope) -> bool:
    """Whether :func:`evaluate_baselines` has finished in this scope."""
    method = scope.run_key(BASE_METHOD).stored_method
    return any(r.method == method for r in _complete_runs(engine, scope))


def evaluation_summary(result: MethodResult) -> dict[str, Any]:
    """The figures of one evaluated method in a few keys: similarity with its interval and
    floor, the normalized score, and the diversity (for the trial's dashboard attribute)."""
    ci = result.similarity_ci
    div = result.diversity
    return {
        "similarity": result.mean_similarity,
        "similarity_percent": round(100 * result.mean_similarity, 2),
        "similarity_ci": None if ci is None else [ci.low, ci.high],
        "floor": result.floor,
        "normalized": normalized(result.mean_similarity, result.floor),
        "distinct_1": div.distinct_1,
        "distinct_2": div.distinct_2,
        "top_reply_share": div.top_reply_share,
        "mean_reply_words": div.mean_words,
        "degenerate": div.degenerate,
        "n_examples": result.n_examples,
    }


def adapter_method(adapter_dir: Path) -> tuple[str, str]:
    """The method name of an adapter evaluated by hand, from its content, and its sha256:
    another adapter at the same path gets another run, never the old one's replies."""
    digest, _ = storage.directory_sha256(Path(adapter_dir))
    return f"{ADAPTER_METHOD_PREFIX}{digest[:12]}", digest
