"""Promotion of a study's best evaluated trial, each study in its own folders.

The evaluator (:mod:`hpo.evaluation.service`) hands over the trials it found; the trials are
evaluated by :mod:`evaluators.trials.scope`, and this module does the rest, with no Optuna in sight:

- :func:`promote_best` promotes the evaluated trial with the best similarity (eval_loss rank is
  not similarity rank), copies its adapter to ``models/<study>/lora_clusters/cluster_NN/``
  (:func:`promote_adapter`, verified against the recorded sha256) and writes
  ``results/<study>/cluster_lora/cluster_lora_results.json`` with every evaluated trial
  (a :class:`~evaluators.trials.records.PromotionReport`);
- :func:`evaluate_adapter` evaluates an adapter folder by hand (never promoted).

The names of :mod:`evaluators.trials.scope` are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import storage
from evaluators.config import DEFAULT_MIN_EFFECT, EvalConfig
from evaluators.report.decision import rule_comparisons
from evaluators.scoring.method_run import EvalItem, MethodResult, evaluate_method
from evaluators.scoring.similarity import reference_ceiling
from evaluators.stats.comparison import Comparison, compare, paired_comparisons
from evaluators.stats.estimates import Difference
from evaluators.trials import card
from evaluators.trials.records import AdapterReport, EvaluatedTrial, PromotionReport
from evaluators.trials.scope import (
    ADAPTER_METHOD_PREFIX,
    BASE_METHOD,
    TRIAL_METHOD,
    BaselineTraining,
    EvalScope,
    PromotedTrial,
    adapter_method,
    baselines_evaluated,
    check_adapter,
    evaluate_baselines,
    evaluate_trial,
    evaluated_trials,
    evaluation_summary,
)
from trainers.embedding import DEFAULT_EMBEDDING_MODEL
from trainers.input_file import RECORD_MAX_BYTES, InputFileError, read_json
from trainers.model_card import CARD_FILE

CLUSTER_ADAPTER_KIND = "cluster_adapter"
RESULTS_KIND = "cluster_lora"
RESULTS_FILE = "cluster_lora_results.json"
PROMOTED_FROM_FILE = "promoted_from.json"


def promote_adapter(
    engine: Any,
    layout: storage.OutputLayout,
    trial: PromotedTrial,
    cluster_id: int,
    *,
    scope: EvalScope | None = None,
    result: MethodResult | None = None,
    n_evaluated: int = 1,
) -> Path:
    """Copy the trial's adapter to ``models/<study>/lora_clusters/cluster_NN/`` atomically,
    with ``promoted_from.json`` and, given the ``scope`` (with its base model) and the trial's
    evaluation ``result``, the promoted adapter's model card (``README.md``).

    The copy is skipped when that folder already holds this trial's adapter, unchanged.

    Raises:
        ValueError: If the trial's adapter is missing or its sha256 no longer matches.
    """
    check_adapter(trial)
    target = layout.cluster_adapter_dir(cluster_id, study_name=trial.study_name)
    folder = target.relative_to(layout.root).as_posix()
    promoted_from, made = card.promoted_files(trial, scope, result, n_evaluated, folder)
    with storage.session_scope(engine) as session:
        recorded = storage.get_artifact(
            session,
            kind=CLUSTER_ADAPTER_KIND,
            study_name=trial.study_name,
            trial_number=trial.trial_number,
        )
    if (
        recorded is not None
        and layout.root / recorded.path == target
        and _read_json(target / PROMOTED_FROM_FILE) == promoted_from
        and (made is None or card.card_text(target) == made)
        and storage.verify_artifact(dataclasses.replace(recorded, path=target))
    ):
        return target
    with storage.atomic_directory(target) as tmp:
        shutil.copytree(trial.adapter_path, tmp, dirs_exist_ok=True)
        (tmp / PROMOTED_FROM_FILE).write_text(json.dumps(promoted_from, indent=2))
        if made is not None:
            (tmp / CARD_FILE).write_text(made, encoding="utf-8")
    storage.publish_and_record(  # to the shared store, if any
        engine,
        layout,
        target,
        kind=CLUSTER_ADAPTER_KIND,
        study_name=trial.study_name,
        trial_number=trial.trial_number,
    )
    return target


def _read_json(path: Path) -> Any:
    """A JSON file of ours, or None if it is missing or unreadable (it is written again)."""
    try:
        return read_json(path, limit=RECORD_MAX_BYTES, what="a results file")
    except InputFileError:
        return None


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, fsync, rename)."""
    with storage.atomic_file(path) as out:
        json.dump(data, out, indent=2)


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


def rule_family(
    methods: dict[str, MethodResult],
    evaluated: str,
    *,
    seed: int = 0,
    tuned_cluster: int | None = None,
    min_effect: float = DEFAULT_MIN_EFFECT,
) -> tuple[dict[str, Comparison], dict[str, Difference]]:
    """The evaluated method's comparisons as the decision rule makes them, consistent with
    :mod:`evaluators.report.decision`: the tested ones, the rule's own (against the unified
    adapter, the cluster-0 adapter and the base model, those present) Holm-corrected among
    themselves; and the described ones, every other baseline (the yardsticks) with its unadjusted
    interval and no verdict, so adding a yardstick never changes a tested comparison. When the
    study tunes cluster 0 (``tuned_cluster``), the cluster-0 adapter is not tested: it is
    cluster 0 itself. A tested comparison beats by more than ``min_effect`` percentage points
    or not at all (:func:`evaluators.stats.comparison.paired_comparisons`)."""
    family = rule_comparisons(methods, cluster=evaluated, tuned_cluster=tuned_cluster)
    described = {
        f"{evaluated} - {name}": compare(methods[evaluated], methods[name], seed=seed)
        for name in methods
        if name != evaluated and (evaluated, name) not in family
    }
    return paired_comparisons(methods, family, min_effect=min_effect, seed=seed), described


def _scope_fields(
    scope: EvalScope, items: Sequence[EvalItem], methods: dict[str, MethodResult]
) -> dict[str, Any]:
    """The fields every report shares (:class:`~evaluators.trials.records.MethodsReport`)."""
    first = next(iter(methods.values()))
    return {
        "study": scope.study_name,
        "cluster_id": scope.cluster_id,
        "embedding_model": scope.embedding_model or DEFAULT_EMBEDDING_MODEL,
        "eval_config": scope.eval_config,
        "n_personas": len(first.per_persona),
        "n_test_examples": len(items),
        "reference_ceiling": reference_ceiling(
            [it.reference for it in items], [it.persona_key for it in items], scope.embedding_model
        ),
        "methods": methods,
    }


def promote_best(
    engine: Any,
    layout: storage.OutputLayout,
    scope: EvalScope,
    trials: Sequence[PromotedTrial],
    *,
    base: Any,
) -> tuple[PromotionReport, Path]:
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
    adapter_dir = promote_adapter(
        engine,
        layout,
        best,
        scope.cluster_id,
        scope=scope,
        result=results[best.trial_number],
        n_evaluated=len(candidates),
    )
    methods = {TRIAL_METHOD: results[best.trial_number], **baselines}
    comparisons, described = rule_family(
        methods,
        TRIAL_METHOD,
        tuned_cluster=scope.cluster_id,
        min_effect=scope.eval_config.min_effect,
    )
    report = PromotionReport(
        **_scope_fields(scope, items, methods),
        comparisons=comparisons,
        described=described,
        trials=tuple(
            EvaluatedTrial(t, results[t.trial_number], promoted=t is best)
            for t in sorted(candidates, key=lambda t: t.trial_number)
        ),
        promoted_dir=adapter_dir,
    )
    path = results_path(layout, scope.study_name)
    write_json(path, report.to_dict(layout.root))  # no machine's folder in a published file
    return report, path


def evaluate_adapter(
    engine: Any,
    layout: storage.OutputLayout,
    scope: EvalScope,
    adapter_dir: Path,
    *,
    base: Any,
) -> tuple[AdapterReport, Path]:
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
    comparisons, described = rule_family(
        methods,
        method,
        tuned_cluster=scope.cluster_id,
        min_effect=scope.eval_config.min_effect,
    )
    report = AdapterReport(
        **_scope_fields(scope, items, methods),
        comparisons=comparisons,
        described=described,
        method=method,
        adapter_dir=adapter_dir,
        sha256=digest,
    )
    path = layout.results_file(RESULTS_KIND, f"{method}_results.json", study_name=scope.study_name)
    write_json(path, report.to_dict())
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
) -> tuple[PromotionReport, Path]:
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


__all__ = [
    "ADAPTER_METHOD_PREFIX",
    "BASE_METHOD",
    "CLUSTER_ADAPTER_KIND",
    "PROMOTED_FROM_FILE",
    "RESULTS_FILE",
    "RESULTS_KIND",
    "TRIAL_METHOD",
    "AdapterReport",
    "BaselineTraining",
    "EvalScope",
    "EvaluatedTrial",
    "PromotedTrial",
    "PromotionReport",
    "adapter_method",
    "baselines_evaluated",
    "check_adapter",
    "evaluate_adapter",
    "evaluate_baselines",
    "evaluate_promoted",
    "evaluate_trial",
    "evaluated_trials",
    "evaluation_summary",
    "promote_adapter",
    "promote_best",
    "reported_trials",
    "results_path",
    "rule_family",
    "write_json",
]
