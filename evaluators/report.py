"""The comparison report of one study: every method on the identical test examples, the
plan's decision rule executed, a plotly figure and a markdown summary.

The report reads what is stored and never generates: each method is an evaluation run of
:mod:`evaluators.evaluation` (the baselines of :mod:`evaluators.baselines`, the study's
evaluated trials of :mod:`evaluators.promotion`, the MoE variants and per-persona adapters of
:mod:`evaluators.moe`). A method without a complete run covering every test example is listed
as "not evaluated" instead of failing, so the report can be written at any time and rewritten
as evaluations arrive.

Every method is compared with the unified adapter, paired on the identical examples with a
persona-level bootstrap; the decision's comparisons (cluster 4 against cluster 0, MoE against
cluster 4) join the same family, and Holm corrects over all of them.

Files, under ``results/<study>/comparison/``: ``comprehensive_comparison.html`` (interactive)
and ``.png`` (rendered by kaleido, which drives a Chromium), ``comprehensive_comparison.json``
(every number) and ``comparison_summary.md`` (the table and the decision).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import storage
from evaluators import decision
from evaluators.baselines import BASE_MODEL, CEILING, CLUSTER0, COPY_PERSONA, SWAPPED, UNIFIED
from evaluators.config import EvalConfig
from evaluators.evaluation import (
    EvalItem,
    MethodResult,
    RunKey,
    compare_methods,
    eval_items,
    score_replies,
)
from evaluators.moe import MOE_COLD, MOE_SELF, PERSONA_ADAPTERS
from evaluators.promotion import TRIAL_METHOD
from evaluators.similarity import normalized

log = logging.getLogger(__name__)

REPORT_KIND = "comparison"
"""Folder of the report under ``results/<study>/``."""
FIGURE_NAME = "comprehensive_comparison"
"""Stem of the figure files (``.html``, ``.png``) and of the JSON."""
SUMMARY_FILE = "comparison_summary.md"
CLUSTER = decision.CLUSTER
TRIAL_PREFIX = "trial_"
"""Report name of another evaluated trial: ``trial_<N>``."""
FIGURE_SIZE = (1400, 1600)
"""Width and height of the PNG, in pixels (before ``PNG_SCALE``)."""
PNG_SCALE = 1

ORDER = (
    BASE_MODEL,
    UNIFIED,
    CLUSTER0,
    CLUSTER,
    MOE_SELF,
    MOE_COLD,
    PERSONA_ADAPTERS,
    COPY_PERSONA,
    CEILING,
    SWAPPED,
)
"""The table's rows (the other evaluated trials follow the promoted one)."""
LABELS = {
    BASE_MODEL: "base model",
    UNIFIED: "unified adapter",
    CLUSTER0: "cluster 0 adapter",
    CLUSTER: "cluster 4, promoted trial",
    MOE_SELF: "MoE merge, with self",
    MOE_COLD: "MoE merge, cold start",
    PERSONA_ADAPTERS: "per-persona adapters",
    COPY_PERSONA: "copy the persona",
    CEILING: "reference ceiling",
    SWAPPED: "swapped persona (base)",
}
REFERENCE_ROWS = frozenset({COPY_PERSONA, CEILING, SWAPPED})
"""Rows that are yardsticks, not candidates (drawn grey)."""


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


def row_order(names: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """Report rows in table order: :data:`ORDER`, other trials right after the promoted one."""
    present = list(names)
    trials = sorted(
        (n for n in present if n.startswith(TRIAL_PREFIX)),
        key=lambda n: int(n.removeprefix(TRIAL_PREFIX)),
    )
    order: list[str] = []
    for name in ORDER:
        if name in present:
            order.append(name)
        if name == CLUSTER:
            order += trials
    return order


def label(name: str) -> str:
    """A row's label for people."""
    if name.startswith(TRIAL_PREFIX):
        return f"cluster 4, trial {name.removeprefix(TRIAL_PREFIX)}"
    return LABELS.get(name, name)


def comparison_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """The report's comparisons ``(a, b)``: every row against the unified adapter, cluster 4
    against cluster 0, and each MoE variant against cluster 4."""
    present = set(names)
    pairs = [(n, UNIFIED) for n in names if n != UNIFIED and UNIFIED in present]
    extra = [(CLUSTER, CLUSTER0), (MOE_SELF, CLUSTER), (MOE_COLD, CLUSTER)]
    pairs += [(a, b) for a, b in extra if a in present and b in present]
    return pairs


def _paired(entry: Mapping[str, Any]) -> decision.Paired:
    return decision.Paired(entry["mean"], entry["low"], entry["high"], bool(entry["beats"]))


def _reversed(entry: Mapping[str, Any], a_degenerate: bool) -> decision.Paired:
    """``b - a`` from the comparison ``a - b`` (the same test, not a second one for Holm)."""
    alpha = 1 - entry["confidence"]
    p = entry["p_holm"] if entry.get("p_holm") is not None else entry["p_value"]
    beats = entry["high"] < 0 and p < alpha and not a_degenerate
    return decision.Paired(-entry["mean"], -entry["high"], -entry["low"], beats)


def decide_from(results: Mapping[str, MethodResult], comparisons: Mapping[str, Any]) -> Any:
    """Run :func:`evaluators.decision.decide` on the report's results and comparisons."""
    standings = {
        name: decision.Standing(r.mean_similarity, r.diversity.degenerate)
        for name, r in results.items()
    }
    differences = {name: _paired(entry) for name, entry in comparisons.items()}
    moe_vs = comparisons.get(f"{MOE_SELF} - {CLUSTER}")
    if moe_vs is not None:
        differences[f"{CLUSTER} - {MOE_SELF}"] = _reversed(
            moe_vs, results[CLUSTER].diversity.degenerate
        )
    return decision.decide(standings, differences)


def _row(name: str, result: MethodResult, comparisons: Mapping[str, Any]) -> dict[str, Any]:
    summary = result.to_dict()
    summary.pop("samples", None)
    ci = result.similarity_ci
    summary["label"] = label(name)
    summary["normalized_ci"] = (
        None
        if ci is None
        else [normalized(ci.low, result.floor), normalized(ci.high, result.floor)]
    )
    summary["vs_unified"] = comparisons.get(f"{name} - {UNIFIED}")
    return summary


def build_report(
    study_name: str,
    results: Mapping[str, MethodResult],
    *,
    history: Sequence[TrialPoint] = (),
    promoted_trial: int | None = None,
    evaluated_trials: Sequence[int] = (),
    extra: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The report as JSON-ready data: rows, comparisons (Holm over all), decision.

    Args:
        study_name: The study.
        results: Evaluated methods by report name, all on the identical examples.
        history: The study's trials, for the eval_loss history.
        promoted_trial: The promoted trial's number, if any.
        evaluated_trials: Every evaluated trial's number (for the "not evaluated" list).
        extra: More fields to keep in the report (settings, file paths).
        seed: Seed of the resampling.
    """
    names = row_order(results)
    comparisons = (
        compare_methods(results, comparison_pairs(names), seed=seed) if len(names) > 1 else {}
    )
    expected = [*ORDER]
    expected += [f"{TRIAL_PREFIX}{n}" for n in evaluated_trials if n != promoted_trial]
    missing = [label(n) for n in expected if n not in results]
    decided = decide_from(results, comparisons)
    return {
        "study": study_name,
        "promoted_trial": promoted_trial,
        "rows": {name: _row(name, results[name], comparisons) for name in names},
        "not_evaluated": missing,
        "comparisons": comparisons,
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


def comparison_figure(report: Mapping[str, Any]) -> Any:
    """The plotly figure: bars with CIs per method, the study's eval_loss history, and
    per-persona scores per method."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3,
        cols=1,
        vertical_spacing=0.09,
        row_heights=[0.38, 0.24, 0.38],
        subplot_titles=(
            "Similarity on the identical test examples (bars: mean over personas; "
            "whiskers: 95% persona-level CI; diamonds: floor;<br>green: main result, red: "
            "degenerate, grey: yardsticks)",
            "eval_loss of the study's trials (validation split)",
            "Per-persona similarity",
        ),
    )
    rows = report["rows"]
    names = list(rows)
    labels = [rows[n]["label"] for n in names]
    means = [100 * rows[n]["mean_similarity"] for n in names]
    cis = [rows[n]["mean_similarity_ci"] for n in names]
    plus = [0.0 if c is None else 100 * c["high"] - m for c, m in zip(cis, means, strict=True)]
    minus = [0.0 if c is None else m - 100 * c["low"] for c, m in zip(cis, means, strict=True)]
    main = report["decision"]["main_result"]
    colors = [
        "#d62728"
        if rows[n]["degenerate"]
        else "#2ca02c"
        if n == main
        else "#b0b0b0"
        if n in REFERENCE_ROWS
        else "#1f77b4"
        for n in names
    ]
    fig.add_trace(
        go.Bar(
            x=labels,
            y=means,
            marker_color=colors,
            error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus},
            text=[f"{m:.1f}%" for m in means],
            textposition="outside",
            name="similarity",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=labels,
            y=[100 * rows[n]["floor"] for n in names],
            mode="markers",
            marker={"symbol": "diamond", "size": 9, "color": "black"},
            name="floor (other personas' references)",
        ),
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text="similarity (%)", row=1, col=1)

    history = report.get("history") or []
    for state, color, symbol in (
        ("COMPLETE", "#1f77b4", "circle"),
        ("PRUNED", "#ff7f0e", "x"),
    ):
        points = [
            (t["number"], t["value"] if t["value"] is not None else _last(t["intermediate"]))
            for t in history
            if t["state"] == state
        ]
        points = [(n, v) for n, v in points if v is not None]
        if points:
            fig.add_trace(
                go.Scatter(
                    x=[n for n, _ in points],
                    y=[v for _, v in points],
                    mode="markers",
                    marker={"color": color, "symbol": symbol, "size": 9},
                    name=f"{state.lower()} trial"
                    + (" (last reported)" if state == "PRUNED" else ""),
                ),
                row=2,
                col=1,
            )
    best: list[tuple[int, float]] = []
    for t in sorted(history, key=lambda t: t["number"]):
        if t["value"] is not None:
            low = t["value"] if not best else min(best[-1][1], t["value"])
            best.append((t["number"], low))
    if best:
        fig.add_trace(
            go.Scatter(
                x=[n for n, _ in best],
                y=[v for _, v in best],
                mode="lines",
                line={"shape": "hv", "color": "#2ca02c"},
                name="best so far",
            ),
            row=2,
            col=1,
        )
    fig.update_xaxes(title_text="trial", tickformat="d", row=2, col=1)
    fig.update_yaxes(title_text="eval_loss", row=2, col=1)

    per_persona = report.get("per_persona") or {}
    for name in names:
        values = list(per_persona.get(name, {}).values())
        fig.add_trace(
            go.Box(
                y=[100 * v for v in values],
                name=rows[name]["label"],
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"size": 3},
                line={"width": 1},
                showlegend=False,
            ),
            row=3,
            col=1,
        )
    fig.update_yaxes(title_text="persona mean similarity (%)", row=3, col=1)
    branch = report["decision"]["branch"]
    fig.update_layout(
        title=f"Study {report['study']}: comparison of methods; decision: {branch}, "
        f"main result: {label(main) if main else 'none'}",
        width=FIGURE_SIZE[0],
        height=FIGURE_SIZE[1],
        template="plotly_white",
        legend={"orientation": "h", "y": 1.03, "x": 0},
        margin={"t": 140},
    )
    return fig


def _last(intermediate: Mapping[str, float]) -> float | None:
    if not intermediate:
        return None
    return intermediate[max(intermediate, key=int)]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def summary_markdown(report: Mapping[str, Any], files: Mapping[str, Any]) -> str:
    """The markdown summary: the decision with its numbers, then the table."""
    d = report["decision"]
    main = d["main_result"]
    lines = [
        f"# Study {report['study']}: comparison of methods",
        "",
        f"**Decision branch:** `{d['branch']}`. "
        f"**Main result:** {label(main) if main else 'none yet'}.",
        "",
        *[f"- {reason}" for reason in d["reasons"]],
        "",
        "Similarity is the cosine of sentence embeddings of reply and reference, averaged per "
        "persona and then over personas, on the identical test examples. The floor is the "
        "similarity to other personas' references; normalized = (s - floor) / (1 - floor). "
        "CIs are 95% persona-level bootstrap intervals; differences are paired and "
        "Holm-corrected over all comparisons of the report. The plan's 82.14% (unified) and "
        "72.65% (cluster 0) are references only: they were measured on other test sets.",
        "",
        "| method | similarity | 95% CI | floor | normalized | distinct-2 | top reply | "
        "words | vs unified (pt, 95% CI, Holm p) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"].values():
        ci = row["mean_similarity_ci"]
        interval = "—" if ci is None else f"{_pct(ci['low'])} – {_pct(ci['high'])}"
        vs = row["vs_unified"]
        versus = (
            "—"
            if vs is None
            else f"{vs['mean_percent_points']:+.2f} [{vs['ci_percent_points'][0]:+.2f}, "
            f"{vs['ci_percent_points'][1]:+.2f}], p={vs['p_holm']:.3g}"
            + (" **beats**" if vs["beats"] else "")
        )
        flag = " (degenerate)" if row["degenerate"] else ""
        lines.append(
            f"| {row['label']}{flag} | {_pct(row['mean_similarity'])} | {interval} | "
            f"{_pct(row['floor'])} | {_pct(row['normalized'])} | "
            f"{row['diversity']['distinct_2']:.3f} | "
            f"{row['diversity']['top_reply_share']:.1%} | {row['mean_reply_words']:.1f} | "
            f"{versus} |"
        )
    for missing in report["not_evaluated"]:
        lines.append(f"| {missing} | not evaluated | | | | | | | |")
    lines += ["", "Files:", ""]
    lines += [f"- {what}: `{where}`" for what, where in files.items()]
    return "\n".join(lines) + "\n"


def _write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically (temp file beside it, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def render_png(figure: Any) -> bytes:
    """The figure as PNG bytes, rendered by kaleido (which drives Chromium).

    Raises:
        RuntimeError: If kaleido or a Chromium browser is missing, naming what to install.
    """
    try:
        return bytes(
            figure.to_image(
                format="png", width=FIGURE_SIZE[0], height=FIGURE_SIZE[1], scale=PNG_SCALE
            )
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise RuntimeError(
            f"could not render the PNG ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "it needs kaleido>=1 (pip) and a Chromium: apt-get install chromium, or "
            "`plotly_get_chrome`"
        ) from exc


def write_report_files(
    layout: storage.OutputLayout,
    report: dict[str, Any],
    *,
    png: bool = True,
) -> dict[str, Path]:
    """Write the figure (HTML, PNG), the JSON and the markdown summary of a report.

    Each file is replaced atomically. When the PNG cannot be rendered (no Chromium), the
    other files are still written, the reason goes into the summary and a warning is logged.

    Args:
        layout: The output root.
        report: From :func:`build_report`.
        png: Render the PNG.

    Returns:
        What was written, by kind (``html``, ``png``, ``json``, ``summary``).
    """
    study = report["study"]
    html = layout.results_file(REPORT_KIND, f"{FIGURE_NAME}.html", study_name=study)
    png_path = html.with_suffix(".png")
    json_path = html.with_suffix(".json")
    summary = layout.results_file(REPORT_KIND, SUMMARY_FILE, study_name=study)
    figure = comparison_figure(report)
    files: dict[str, Path] = {"html": html}
    _write_bytes(html, figure.to_html(include_plotlyjs=True, full_html=True).encode())
    if png:
        try:
            _write_bytes(png_path, render_png(figure))
            files["png"] = png_path
        except RuntimeError as exc:
            log.warning("%s", exc)
            report["png_error"] = str(exc)
    files["json"] = json_path
    files["summary"] = summary
    shown: dict[str, Any] = dict(files)
    if "png_error" in report:
        shown["png"] = f"not rendered: {report['png_error']}"
    _write_bytes(json_path, (json.dumps(report, indent=2) + "\n").encode())
    _write_bytes(summary, summary_markdown(report, shown).encode())
    return files
