"""Evaluation and promotion of a study's trials, each study in its own folders.

The evaluator (:mod:`hpo.evaluator`) hands over the trials it found; this module does the
rest, with no Optuna in sight:

- :func:`evaluate_trial` scores one trial's own adapter on the cluster's test examples;
- :func:`evaluate_baselines` scores what every trial is compared with, once per study;
- :func:`promote_best` promotes the evaluated trial with the best similarity (eval_loss rank is
  not similarity rank), copies its adapter to ``models/<study>/lora_clusters/cluster_NN/`` and
  writes ``results/<study>/cluster_lora/cluster_lora_results.json`` with every evaluated trial.

Every evaluation is an evaluation run of :mod:`evaluators.evaluation`: stored batch by batch,
resumable, keyed by study, method, trial and :class:`~evaluators.config.EvalConfig`, so an
evaluation is never stored twice and one study's never touches another's.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
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
from evaluators.similarity import normalized, reference_ceiling
from trainers.embedding import DEFAULT_EMBEDDING_MODEL

CLUSTER_ADAPTER_KIND = "cluster_adapter"
RESULTS_KIND = "cluster_lora"
RESULTS_FILE = "cluster_lora_results.json"
TRIAL_METHOD = "cluster_lora"
"""Method name of a trial's adapter (the promoted one keeps it in the results file)."""
BASE_METHOD = "base_model"
"""Method name of the base model with no adapter."""
ADAPTER_METHOD_PREFIX = "adapter-"
"""Method name of an adapter evaluated by hand: the prefix and 12 hex digits of its sha256."""
PROMOTED_FROM_FILE = "promoted_from.json"


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


def promote_adapter(
    engine: Any, layout: storage.OutputLayout, trial: PromotedTrial, cluster_id: int
) -> Path:
    """Copy the trial's adapter to ``models/<study>/lora_clusters/cluster_NN/`` atomically.

    The copy is skipped when that folder already holds this trial's adapter, unchanged.

    Raises:
        ValueError: If the trial's adapter is missing or its sha256 no longer matches.
    """
    check_adapter(trial)
    target = layout.cluster_adapter_dir(cluster_id, study_name=trial.study_name)
    promoted_from = {
        "study": trial.study_name,
        "trial": trial.trial_number,
        "eval_loss": trial.eval_loss,
        "params": trial.params,
    }
    with storage.session_scope(engine) as session:
        recorded = storage.get_artifact(
            session,
            kind=CLUSTER_ADAPTER_KIND,
            study_name=trial.study_name,
            trial_number=trial.trial_number,
        )
    if (
        recorded is not None
        and recorded.path == target
        and _read_json(target / PROMOTED_FROM_FILE) == promoted_from
        and storage.verify_artifact(recorded)
    ):
        return target
    with storage.atomic_directory(target) as tmp:
        shutil.copytree(trial.adapter_path, tmp, dirs_exist_ok=True)
        (tmp / PROMOTED_FROM_FILE).write_text(json.dumps(promoted_from, indent=2))
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    with storage.atomic_file(path) as out:
        json.dump(data, out, indent=2)


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


def results_path(layout: storage.OutputLayout, study_name: str) -> Path:
    """``results/<study>/cluster_lora/cluster_lora_results.json``."""
    return layout.results_file(RESULTS_KIND, RESULTS_FILE, study_name=study_name)


def reported_trials(layout: storage.OutputLayout, scope: EvalScope) -> set[int] | None:
    """The trials the study's results file lists under the scope's settings, or None when
    there is no such file (missing, unreadable, or written with other settings)."""
    report = _read_json(results_path(layout, scope.study_name))
    if not isinstance(report, dict) or report.get("eval_config_key") != scope.eval_config.key:
        return None
    if report.get("cluster_id") != scope.cluster_id:
        return None
    return {t["trial"] for t in report.get("evaluated_trials", [])}


def _rank(trial: PromotedTrial, result: MethodResult) -> tuple[bool, float, float, int]:
    """Promotion order: a degenerate method last, then the higher similarity, then the lower
    eval_loss, then the earlier trial."""
    return (
        result.diversity.degenerate,
        -result.mean_similarity,
        trial.eval_loss,
        trial.trial_number,
    )


def promote_best(
    engine: Any,
    layout: storage.OutputLayout,
    scope: EvalScope,
    trials: Sequence[PromotedTrial],
    *,
    base: Any,
) -> tuple[dict[str, Any], Path]:
    """Promote the evaluated trial with the best similarity and write the study's results.

    Only trials with a complete evaluation in the scope count (the others are skipped, not
    evaluated here); the baselines must be evaluated. Call it under the evaluator's
    ``promotion`` lease, so that two evaluators never write the study's files at once.

    Args:
        engine: The storage engine.
        layout: The output root.
        scope: The study's evaluation scope.
        trials: Every trial that may have been evaluated (the study's COMPLETE trials).
        base: The loaded base model (only read; every run used is complete).

    Returns:
        The report and the path of ``results/<study>/cluster_lora/cluster_lora_results.json``.

    Raises:
        LookupError: If no trial of ``trials`` is evaluated, or the baselines are not.
    """
    done = evaluated_trials(engine, scope)
    candidates = [t for t in trials if t.trial_number in done]
    if not candidates:
        raise LookupError(
            f"study {scope.study_name!r} has no evaluated trial among "
            f"{sorted(t.trial_number for t in trials)}; evaluate one first"
        )
    if not baselines_evaluated(engine, scope):
        raise LookupError(f"study {scope.study_name!r}: the baselines are not evaluated yet")
    items = scope.items()
    results = {
        t.trial_number: evaluate_method(
            engine,
            scope.run_key(TRIAL_METHOD, t.trial_number),
            base,
            items,
            adapter_dir=Path(t.adapter_path),
            embedding_model=scope.embedding_model,
        )
        for t in candidates
    }
    baselines = evaluate_baselines(engine, scope, base=base)
    best = min(candidates, key=lambda t: _rank(t, results[t.trial_number]))
    adapter_dir = promote_adapter(engine, layout, best, scope.cluster_id)
    promoted = results[best.trial_number]
    methods = {TRIAL_METHOD: promoted, **baselines}
    report = {
        "study": scope.study_name,
        "cluster_id": scope.cluster_id,
        "promoted_trial": {
            "number": best.trial_number,
            "eval_loss": best.eval_loss,
            "params": best.params,
            "similarity": promoted.mean_similarity,
            "adapter": str(adapter_dir),
            "source_adapter": str(best.adapter_path),
            "rule": "best similarity among the evaluated trials; a degenerate one last",
        },
        "evaluated_trials": [
            {
                "trial": t.trial_number,
                "eval_loss": t.eval_loss,
                "params": t.params,
                "promoted": t is best,
                **evaluation_summary(results[t.trial_number]),
                "adapter": str(t.adapter_path),
            }
            for t in sorted(candidates, key=lambda t: t.trial_number)
        ],
        "embedding_model": scope.embedding_model or DEFAULT_EMBEDDING_MODEL,
        "eval_config": scope.eval_config.to_dict(),
        "eval_config_key": scope.eval_config.key,
        "n_personas": len(promoted.per_persona),
        "n_test_examples": len(items),
        "reference_ceiling": reference_ceiling(
            [it.reference for it in items], [it.persona_key for it in items], scope.embedding_model
        ),
        "methods": {name: result.to_dict() for name, result in methods.items()},
        "difference_percent_points": round(
            100 * (promoted.mean_similarity - baselines[BASE_METHOD].mean_similarity), 2
        ),
        "comparisons": compare_methods(methods, [(TRIAL_METHOD, name) for name in baselines]),
    }
    path = results_path(layout, scope.study_name)
    write_json(path, report)
    return report, path


def adapter_method(adapter_dir: Path) -> tuple[str, str]:
    """The method name of an adapter evaluated by hand, from its content, and its sha256:
    another adapter at the same path gets another run, never the old one's replies."""
    digest, _ = storage.directory_sha256(Path(adapter_dir))
    return f"{ADAPTER_METHOD_PREFIX}{digest[:12]}", digest


def evaluate_adapter(
    engine: Any,
    layout: storage.OutputLayout,
    scope: EvalScope,
    adapter_dir: Path,
    *,
    base: Any,
) -> tuple[dict[str, Any], Path]:
    """Evaluate an adapter that is no trial of the study (``hpo evaluate --adapter``) against
    the study's baselines, and write ``results/<study>/cluster_lora/<method>_results.json``.

    The adapter is not a candidate for promotion.

    Returns:
        The report and its path.

    Raises:
        ValueError: If ``adapter_dir`` is not a directory.
    """
    adapter_dir = Path(adapter_dir).resolve()
    if not adapter_dir.is_dir():
        raise ValueError(f"adapter {str(adapter_dir)!r} is not a directory")
    method, digest = adapter_method(adapter_dir)
    items = scope.items()
    result = evaluate_method(
        engine,
        scope.run_key(method),
        base,
        items,
        adapter_dir=adapter_dir,
        embedding_model=scope.embedding_model,
    )
    baselines = evaluate_baselines(engine, scope, base=base)
    methods = {method: result, **baselines}
    report = {
        "study": scope.study_name,
        "cluster_id": scope.cluster_id,
        "adapter": {"path": str(adapter_dir), "sha256": digest, **evaluation_summary(result)},
        "embedding_model": scope.embedding_model or DEFAULT_EMBEDDING_MODEL,
        "eval_config": scope.eval_config.to_dict(),
        "eval_config_key": scope.eval_config.key,
        "n_personas": len(result.per_persona),
        "n_test_examples": len(items),
        "reference_ceiling": reference_ceiling(
            [it.reference for it in items], [it.persona_key for it in items], scope.embedding_model
        ),
        "methods": {name: r.to_dict() for name, r in methods.items()},
        "comparisons": compare_methods(methods, [(method, name) for name in baselines]),
    }
    path = layout.results_file(RESULTS_KIND, f"{method}_results.json", study_name=scope.study_name)
    write_json(path, report)
    return report, path


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
    """Evaluate one trial and the baselines, and promote it: :func:`evaluate_trial`,
    :func:`evaluate_baselines` and :func:`promote_best` with this trial alone.

    Returns:
        The report and the path of the study's results file.
    """
    scope = EvalScope(
        study_name=trial.study_name,
        dataset_id=dataset_id,
        clustering_id=clustering_id,
        cluster_id=cluster_id,
        personas=personas,
        embedding_model=embedding_model,
        eval_config=eval_config,
    )
    evaluate_trial(engine, scope, trial, base=base)
    evaluate_baselines(engine, scope, base=base)
    return promote_best(engine, layout, scope, [trial], base=base)
