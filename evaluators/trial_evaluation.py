"""Evaluation of a study's trials in one scope: the trial candidates, the scope all their
evaluations share, and the evaluations themselves.

- :func:`evaluate_trial` scores one trial's own adapter on the cluster's test examples;
- :func:`evaluate_baselines` scores what every trial is compared with, once per study;
- :func:`evaluated_trials` and :func:`baselines_evaluated` say what is done.

Every evaluation is an evaluation run of :mod:`evaluators.evaluation`: stored batch by batch,
resumable, keyed by study, method, trial and :class:`~evaluators.config.EvalConfig`, so an
evaluation is never stored twice and one study's never touches another's. Promotion of the best
evaluated trial is :mod:`evaluators.promotion`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import storage
from evaluators.config import EvalConfig
from evaluators.evaluation import EvalItem, MethodResult, RunKey, eval_items, evaluate_method
from evaluators.similarity import normalized

TRIAL_METHOD = "cluster_lora"
"""Method name of a trial's adapter (the promoted one keeps it in the results file)."""
BASE_METHOD = "base_model"
"""Method name of the base model with no adapter."""
ADAPTER_METHOD_PREFIX = "adapter-"
"""Method name of an adapter evaluated by hand: the prefix and 12 hex digits of its sha256."""


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
    read the stored runs back. Today that is the base model with no adapter.
    ``evaluators.baselines`` (unified, cluster-0, copy-persona, ceiling, swapped persona)
    joins here: each baseline is one more entry of the returned dict, and
    :func:`promote_best` compares the promoted trial with every entry.

    Returns:
        The results by method name.
    """
    items = scope.items()
    return {
        BASE_METHOD: evaluate_method(
            engine,
            scope.run_key(BASE_METHOD),
            base,
            items,
            adapter_dir=None,
            embedding_model=scope.embedding_model,
        )
    }


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
