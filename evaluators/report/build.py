"""The comparison report of one study: every method on the identical test examples, the
plan's decision rule executed, a plotly figure and a markdown summary.

The report reads what is stored and never generates: each method is an evaluation run of
:mod:`evaluators.scoring.method_run` (the baselines of :mod:`evaluators.baselines.suite`, the
study's evaluated trials of :mod:`evaluators.trials.promotion`, the MoE variants and
per-persona adapters of :mod:`evaluators.moe.run`). A method without a complete run covering
every test example is listed as "not evaluated" instead of failing, so the report can be
written at any time and rewritten as evaluations arrive.

The decision's own comparisons (:func:`evaluators.report.decision.rule_comparisons`: the tuned
cluster against the unified and the cluster-0 adapter (not when the tuned cluster is cluster 0
itself), MoE against the tuned cluster, each candidate against the
base model) are the tested family, paired on the identical examples with a persona-level
bootstrap and Holm-corrected among themselves only; the report names them. Every other row is
described against the base model, with its unadjusted interval and no verdict: yardsticks
(copy the persona, the reference agreement, the swapped persona), other trials and variants
never enter the family, so adding one never changes the decision.

Files, under ``results/<study>/comparison/``: ``comprehensive_comparison.html`` (interactive)
and ``.png`` (rendered by kaleido, which drives a Chromium), ``comprehensive_comparison.json``
(every number) and ``comparison_summary.md`` (the table and the decision).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import storage
from evaluators.baselines.suite import BASE_MODEL, CLUSTER0
from evaluators.config import DEFAULT_MIN_EFFECT, EvalConfig
from evaluators.report import decision
from evaluators.report.figure import FIGURE_SIZE, PNG_SCALE, comparison_figure, render_png
from evaluators.report.rows import (
    CLUSTER,
    LABELS,
    ORDER,
    REFERENCE_ROWS,
    TRIAL_PREFIX,
    comparison_pairs,
    described_differences,
    described_pairs,
    label,
    row_order,
)
from evaluators.report.summary import summary_markdown
from evaluators.scoring.method_run import (
    EvalItem,
    MethodResult,
    RunKey,
    eval_items,
    score_replies,
)
from evaluators.scoring.similarity import normalized
from evaluators.stats.comparison import compare_methods
from evaluators.stats.families import DECISION_FAMILY, DECISION_NOTE, family_fields
from evaluators.trials.promotion import TRIAL_METHOD

__all__ = [
    "CLUSTER",
    "DECISION_FAMILY",
    "FIGURE_NAME",
    "FIGURE_SIZE",
    "LABELS",
    "ORDER",
    "PNG_SCALE",
    "REFERENCE_ROWS",
    "REPORT_KIND",
    "SUMMARY_FILE",
    "TRIAL_PREFIX",
    "ReportScope",
    "TrialPoint",
    "build_report",
    "collect_results",
    "comparison_figure",
    "comparison_pairs",
    "decide_from",
    "find_runs",
    "label",
    "load_result",
    "render_png",
    "row_order",
    "summary_markdown",
    "write_report_files",
]

log = logging.getLogger(__name__)

REPORT_KIND = "comparison"
"""Folder of the report under ``results/<study>/``."""
FIGURE_NAME = "comprehensive_comparison"
"""Stem of the figure files (``.html``, ``.png``) and of the JSON."""
SUMMARY_FILE = "comparison_summary.md"


@dataclass(frozen=True)
class ReportScope:
    """The study and the examples its report compares methods on."""

    study_name: str
    cluster_id: int
    """The evaluated cluster (its runs are keyed by it)."""
    personas: Sequence[Any]
    """The cluster's personas with their examples; their test examples are the identical
    examples of every method."""
    eval_config: EvalConfig = EvalConfig()
    """Only runs generated with these settings are read."""

    def items(self) -> list[EvalItem]:
        """The test examples.

        Raises:
            ValueError: If the personas have no test examples.
        """
        items = eval_items(self.personas, "test")
        if not items:
            raise ValueError(f"study {self.study_name!r}: its personas have no test examples")
        return items


@dataclass(frozen=True)
class TrialPoint:
    """One trial of the study, for the eval_loss history."""

    number: int
    state: str
    """``COMPLETE``, ``PRUNED``, ``FAIL`` or ``RUNNING``."""
    value: float | None
    """Final eval_loss of a COMPLETE trial, else None."""
    intermediate: Mapping[int, float] = field(default_factory=dict)
    """Reported eval_loss by evaluation step."""


def _base_name(stored_method: str) -> tuple[str, str]:
    """``(method, eval config key)`` of a stored ``method@key``."""
    method, _, key = stored_method.rpartition("@")
    return method, key


def _report_name(method: str, trial_number: int, promoted: int | None) -> str | None:
    """The report row of a stored method name (``None``: not one the report shows)."""
    if method == TRIAL_METHOD:
        if trial_number < 0:
            return None
        return CLUSTER if trial_number == promoted else f"{TRIAL_PREFIX}{trial_number}"
    stem = method.split(".", 1)[0]
    return stem if stem in ORDER and stem != CLUSTER else None


def find_runs(
    engine: Any, scope: ReportScope, *, promoted_trial: int | None
) -> dict[str, storage.RunInfo]:
    """The run that stands for each report row: complete, generated with the scope's settings,
    on the scope's cluster, covering every test example; the newest when several do.

    Args:
        engine: The storage engine.
        scope: The study and its examples.
        promoted_trial: The promoted trial's number (its row is :data:`CLUSTER`), or None.
    """
    wanted = {it.example_id for it in scope.items()}
    found: dict[str, storage.RunInfo] = {}
    with storage.session_scope(engine) as session:
        runs = storage.list_evaluation_runs(session, scope.study_name)
        for run in sorted(runs, key=lambda r: r.id, reverse=True):
            method, key = _base_name(run.method)
            if (
                run.status != "complete"
                or run.split != "test"
                or run.cluster_id != scope.cluster_id
                or key != scope.eval_config.key
            ):
                continue
            name = _report_name(method, run.trial_number, promoted_trial)
            if name is None or name in found:
                continue
            if wanted <= storage.done_example_ids(session, run.id):
                found[name] = run
    return found


def load_result(engine: Any, scope: ReportScope, run: storage.RunInfo) -> MethodResult:
    """Summarize a complete run on the scope's examples (nothing is generated).

    Raises:
        ValueError: If the run lacks one of the examples (it would have to generate).
    """
    items = scope.items()
    with storage.session_scope(engine) as session:
        stored = {r.example_id: r.generated for r in storage.evaluation_results(session, run.id)}
    lacking = {it.example_id for it in items} - set(stored)
    if lacking:
        raise ValueError(
            f"run {run.id} ({run.method}) lacks {len(lacking)} test examples, "
            f"e.g. {min(lacking)}: evaluate it first"
        )
    method, _ = _base_name(run.method)
    key = RunKey(
        study_name=run.study_name,
        method=method,
        dataset_id=run.dataset_id,
        clustering_id=run.clustering_id,
        cluster_id=run.cluster_id,
        trial_number=run.trial_number,
        split=run.split,
        eval_config=scope.eval_config,
    )
    # Every example is stored: score_replies finds them all done and only summarizes the
    # run, so no model is loaded and nothing is generated or written again.
    return score_replies(
        engine,
        key,
        items,
        [stored[it.example_id] for it in items],
        embedding_model=run.embedding_model,
    )


def collect_results(
    engine: Any, scope: ReportScope, *, promoted_trial: int | None
) -> dict[str, MethodResult]:
    """Every report row that has a complete run, in table order."""
    runs = find_runs(engine, scope, promoted_trial=promoted_trial)
    results = {name: load_result(engine, scope, run) for name, run in runs.items()}
    return {name: results[name] for name in row_order(results)}


def _paired(entry: Mapping[str, Any]) -> decision.Paired:
    """A tested comparison's JSON entry as the rule reads it: its p-value is the margin test's
    (where the entry has one), its Holm p-value corrects that one."""
    p_test = entry.get("p_margin")
    p_test = entry["p_value"] if p_test is None else p_test
    return decision.Paired(
        entry["mean"],
        entry["low"],
        entry["high"],
        bool(entry["beats"]),
        entry["p_holm"] if entry.get("p_holm") is not None else p_test,
        p_test,
        entry.get("margin") or 0.0,
    )


def decide_from(
    results: Mapping[str, MethodResult],
    comparisons: Mapping[str, Any],
    *,
    cluster_id: int | None = None,
) -> Any:
    """Run :func:`evaluators.report.decision.decide` on the report's results and comparisons
    (``cluster_id``: the study's tuned cluster), its reasons in the table's labels."""
    standings = {
        name: decision.Standing(r.mean_similarity, r.diversity.degenerate)
        for name, r in results.items()
    }
    differences = {name: _paired(entry) for name, entry in comparisons.items()}
    labels = {name: label(name, cluster_id) for name in ORDER}
    return decision.decide(standings, differences, tuned_cluster=cluster_id, labels=labels)


def _row(
    name: str, result: MethodResult, described: Mapping[str, Any], cluster_id: int
) -> dict[str, Any]:
    summary = result.to_dict()
    summary.pop("samples", None)
    ci = result.similarity_ci
    summary["label"] = label(name, cluster_id)
    summary["normalized_ci"] = (
        None
        if ci is None
        else [normalized(ci.low, result.floor), normalized(ci.high, result.floor)]
    )
    summary["vs_base_model"] = described.get(f"{name} - {BASE_MODEL}")
    return summary


def build_report(
    study_name: str,
    results: Mapping[str, MethodResult],
    *,
    cluster_id: int,
    history: Sequence[TrialPoint] = (),
    promoted_trial: int | None = None,
    evaluated_trials: Sequence[int] = (),
    extra: Mapping[str, Any] | None = None,
    min_effect: float = DEFAULT_MIN_EFFECT,
    seed: int = 0,
) -> dict[str, Any]:
    """The report as JSON-ready data: rows, the decision's comparisons (each tested against
    the minimum effect, Holm over exactly those: the family ``decision_comparisons``, named in
    ``tested_family``), the rows described
    against the base model, decision.

    Args:
        study_name: The study.
        results: Evaluated methods by report name, all on the identical examples.
        cluster_id: The cluster the study tunes: the labels name it, and when it is 0 the
            rule's comparison with the cluster-0 adapter is not made (cluster 0 itself).
        history: The study's trials, for the eval_loss history.
        promoted_trial: The promoted trial's number, if any.
        evaluated_trials: Every evaluated trial's number (for the "not evaluated" list).
        extra: More fields to keep in the report (settings, file paths).
        min_effect: The minimum effect a verdict needs, in percentage points of similarity
            (:attr:`evaluators.config.EvalConfig.min_effect`).
        seed: Seed of the resampling.
    """
    names = row_order(results)
    family = comparison_pairs(names, cluster_id=cluster_id)
    comparisons = (
        compare_methods(results, family, min_effect=min_effect, seed=seed) if family else {}
    )
    described = described_differences(results, described_pairs(names), seed=seed)
    expected = [n for n in ORDER if not (cluster_id == 0 and n == CLUSTER0)]
    expected += [f"{TRIAL_PREFIX}{n}" for n in evaluated_trials if n != promoted_trial]
    missing = [label(n, cluster_id) for n in expected if n not in results]
    decided = decide_from(results, comparisons, cluster_id=cluster_id)
    return {
        "study": study_name,
        "cluster_id": cluster_id,
        "promoted_trial": promoted_trial,
        "rows": {name: _row(name, results[name], described, cluster_id) for name in names},
        "not_evaluated": missing,
        "min_effect_percent_points": min_effect,
        **family_fields(DECISION_FAMILY, comparisons, DECISION_NOTE),
        "described": described,
        "decision": decided.to_dict(),
        "history": [
            {
                "number": t.number,
                "state": t.state,
                "value": t.value,
                "intermediate": {str(k): v for k, v in sorted(t.intermediate.items())},
            }
            for t in history
        ],
        "per_persona": {name: results[name].per_persona for name in names},
        **(dict(extra) if extra else {}),
    }


def write_report_files(
    layout: storage.OutputLayout,
    report: dict[str, Any],
    *,
    png: bool = True,
) -> dict[str, Path]:
    """Write the figure (HTML, PNG), the JSON and the markdown summary of a report.

    The files are written as one set: into a temporary folder that then replaces
    ``results/<study>/comparison/`` whole (:func:`storage.atomic_directory`), so a report
    killed or failing midway leaves the previous set as it was, never a new HTML beside an
    old PNG. When the PNG cannot be rendered (no Chromium), the other files are still
    written, the reason goes into the summary and a warning is logged.

    Args:
        layout: The output root.
        report: From :func:`build_report`.
        png: Render the PNG.

    Returns:
        What was written, by kind (``html``, ``png``, ``json``, ``summary``), at their final
        places.
    """
    study = report["study"]
    html = layout.results_file(REPORT_KIND, f"{FIGURE_NAME}.html", study_name=study)
    folder = html.parent
    files: dict[str, Path] = {"html": html}
    figure = comparison_figure(report)
    with storage.atomic_directory(folder) as tmp:
        (tmp / html.name).write_bytes(
            figure.to_html(include_plotlyjs=True, full_html=True).encode()
        )
        if png:
            try:
                (tmp / f"{FIGURE_NAME}.png").write_bytes(render_png(figure))
                files["png"] = html.with_suffix(".png")
            except RuntimeError as exc:
                log.warning("%s", exc)
                report["png_error"] = str(exc)
        files["json"] = html.with_suffix(".json")
        files["summary"] = folder / SUMMARY_FILE
        shown: dict[str, Any] = {k: storage.relative(layout, v) for k, v in files.items()}
        if "png_error" in report:
            shown["png"] = f"not rendered: {report['png_error']}"
        (tmp / files["json"].name).write_bytes((json.dumps(report, indent=2) + "\n").encode())
        (tmp / SUMMARY_FILE).write_bytes(summary_markdown(report, shown).encode())
    return files
