"""The comparison report's markdown summary (:mod:`evaluators.report.build`): the decision with
its numbers, then the table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluators.report import decision
from evaluators.report.rows import cluster_name, label
from evaluators.report.verdict import why_not


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _by(report: Mapping[str, Any]) -> str:
    """`` by more than the minimum effect of N points``, where the report has one."""
    min_effect = report.get("min_effect_percent_points") or 0
    return f" by more than the minimum effect of {min_effect:.1f} points" if min_effect else ""


def headline(report: Mapping[str, Any]) -> str:
    """The decision as one sentence for people (the figure's title, the summary's first line),
    with labels, not the branch id."""
    d = report["decision"]
    main = d["main_result"]
    numbers = d.get("numbers", {})
    base = numbers.get(decision.BASE, {}).get("similarity")
    by = _by(report)
    if d["branch"] == decision.BASE_NOT_BEATEN:
        beaten_by = numbers.get("step4", {}).get("beaten_by", [])
        if beaten_by:
            return (
                f"The rule's main result does not beat the base model ({_pct(base)}){by}; "
                "no main result"
            )
        return f"No method beats the base model ({_pct(base)}){by}; no main result"
    if d["branch"] == decision.INCOMPLETE:
        return "Not decided yet: " + (d["reasons"][-1] if d["reasons"] else "nothing evaluated")
    cluster_id = report.get("cluster_id")
    tuned = cluster_name(cluster_id).capitalize()
    beats = d["branch"] == decision.COMPARE_WITH_MOE
    if cluster_id == 0:
        step1 = (
            f"{tuned} {'beats' if beats else 'does not beat'} the unified adapter (no "
            "cluster-0 comparison: cluster 0 is the tuned cluster itself)"
        )
    elif beats:
        step1 = f"{tuned} beats the unified and cluster-0 adapters"
    else:
        step1 = f"{tuned} does not beat both the unified and cluster-0 adapters"
    if main is None:
        return f"{step1}; no main result yet"
    score = numbers.get(main, {}).get("similarity")
    return (
        f"{step1}; main result: {label(main, cluster_id)} ({_pct(score)}, beats the base model "
        f"({_pct(base)}){by})"
    )


def decision_line(report: Mapping[str, Any]) -> str:
    """The decision in a few words (under 90 characters, the study's ``decision`` attribute in
    the dashboard): the main result and the base model's score, or why there is none."""
    d = report["decision"]
    numbers = d.get("numbers", {})
    base = numbers.get(decision.BASE, {}).get("similarity")
    main = d["main_result"]
    if d["branch"] == decision.BASE_NOT_BEATEN:
        min_effect = report.get("min_effect_percent_points") or 0
        by = f" by >{min_effect:.1f} pt" if min_effect else ""
        return f"report: no main result, none beats the base model ({_pct(base)}){by}"
    if d["branch"] == decision.INCOMPLETE or main is None:
        return "report: not decided yet (a method of the rule is not evaluated)"
    score = numbers.get(main, {}).get("similarity")
    return (
        f"report: main result {label(main, report.get('cluster_id'))} {_pct(score)}, "
        f"base model {_pct(base)}"
    )


def _verdict(entry: Mapping[str, Any], degenerate: bool = False) -> str:
    """A tested comparison's verdict with its reason (every reason that holds)."""
    if entry["beats"]:
        return "**beats**"
    return "does not beat: " + why_not(
        entry["low"],
        entry["high"],
        margin=entry.get("margin") or 0.0,
        p_holm=entry.get("p_holm"),
        degenerate=degenerate,
    )


def _family_lines(report: Mapping[str, Any]) -> list[str]:
    """The decision's comparisons, each with both of the numbers its verdict used."""
    comparisons = report[report["tested_family"]]
    family = list(comparisons)
    cluster_id = report.get("cluster_id")
    min_effect = report.get("min_effect_percent_points") or 0
    lines = [
        f"**The decision's comparisons** (the family of Holm's correction: these {len(family)} "
        'and nothing else; each is the one-sided test of "difference > the minimum effect of '
        f'{min_effect:.1f} points", and a verdict of beats needs the 95% CI above the minimum '
        "effect and Holm p < 0.05):",
        "",
        "| comparison | difference (pt) | 95% CI (unadjusted, pt) | p (one-sided) | Holm p "
        "| verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name in family:
        c = comparisons[name]
        a, _, b = name.partition(" - ")
        low, high = c["ci_percent_points"]
        p = c["p_value"] if c.get("p_margin") is None else c["p_margin"]
        lines.append(
            f"| {label(a, cluster_id)} − {label(b, cluster_id)} | "
            f"{c['mean_percent_points']:+.2f} | "
            f"{low:+.2f} to {high:+.2f} | {p:.3g} | {c['p_holm']:.3g} | "
            f"{_verdict(c, report['rows'].get(a, {}).get('degenerate', False))} |"
        )
    return lines


def summary_markdown(report: Mapping[str, Any], files: Mapping[str, Any]) -> str:
    """The markdown summary: the decision with its numbers, then the table."""
    d = report["decision"]
    main = d["main_result"]
    lines = [
        f"# Study {report['study']}: comparison of methods",
        "",
        f"**Decision:** {headline(report)}.",
        "",
        f"**Decision branch:** `{d['branch']}`. "
        f"**Main result:** {label(main, report.get('cluster_id')) if main else 'none'}.",
        "",
        *[f"- {reason}" for reason in d["reasons"]],
        "",
        *_family_lines(report),
        "",
        "Similarity is the cosine of sentence embeddings of reply and reference, averaged per "
        "persona and then over personas, on the identical test examples. The floor is the "
        "similarity to other personas' references; normalized = (s - floor) / (1 - floor). "
        "CIs are 95% persona-level bootstrap intervals; differences are paired. Only the "
        "decision's comparisons above are tested (Holm over them), each against the minimum "
        "effect (docs/evaluation.md says why); the column vs base model "
        "describes every row with its unadjusted interval and no verdict: yardsticks (copy the "
        "persona, the reference agreement, the swapped persona) describe the scale and are not "
        "hypotheses. The reference agreement is no ceiling: a model's replies can be closer to "
        "a persona's references than two of its references are to each other. The plan's "
        "82.14% (unified) and 72.65% (cluster 0) are references only: they were measured on "
        "other test sets.",
        "",
        "| method | similarity | 95% CI | floor | normalized | distinct-2 | top reply | "
        "words | vs base model (pt, 95% CI unadjusted, not tested) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"].values():
        ci = row["mean_similarity_ci"]
        interval = "—" if ci is None else f"{_pct(ci['low'])} – {_pct(ci['high'])}"
        vs = row.get("vs_base_model")
        versus = (
            "—"
            if vs is None
            else f"{vs['mean_percent_points']:+.2f} [{vs['ci_percent_points'][0]:+.2f}, "
            f"{vs['ci_percent_points'][1]:+.2f}]"
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
