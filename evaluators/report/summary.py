"""The comparison report's markdown summary (:mod:`evaluators.report.build`): the decision with
its numbers, then the table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluators.report.rows import label


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
