"""The rows of the comparison report (:mod:`evaluators.report.build`): which methods, in which
order, under which labels, and which pairs are compared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from evaluators.baselines.suite import BASE_MODEL, CEILING, CLUSTER0, COPY_PERSONA, SWAPPED, UNIFIED
from evaluators.moe.run import PERSONA_ADAPTERS
from evaluators.report import decision
from evaluators.report.decision import MOE_COLD, MOE_SELF
from evaluators.stats.comparison import compare

if TYPE_CHECKING:
    from evaluators.scoring.method_run import MethodResult

CLUSTER = decision.CLUSTER


TRIAL_PREFIX = "trial_"
"""Report name of another evaluated trial: ``trial_<N>``."""


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
    CLUSTER: "tuned cluster, promoted trial",
    MOE_SELF: "MoE merge, with self",
    MOE_COLD: "MoE merge, cold start",
    PERSONA_ADAPTERS: "per-persona adapters",
    COPY_PERSONA: "copy the persona",
    CEILING: "reference agreement (two references of the same persona)",
    SWAPPED: "swapped persona (base)",
}


REFERENCE_ROWS = frozenset({COPY_PERSONA, CEILING, SWAPPED})
"""Rows that are yardsticks, not candidates (drawn grey): described, never tested. The stored
key of the reference agreement stays ``reference_ceiling`` (:data:`CEILING`), so that stored
runs keep their rows; it is no ceiling (on the demo it sits below the base model)."""


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


def cluster_name(cluster_id: int | None) -> str:
    """The tuned cluster for people: ``cluster N``, or ``tuned cluster`` when not known."""
    return "tuned cluster" if cluster_id is None else f"cluster {cluster_id}"


def label(name: str, cluster_id: int | None = None) -> str:
    """A row's label for people; the study's trials are labelled with the study's cluster."""
    if name.startswith(TRIAL_PREFIX):
        return f"{cluster_name(cluster_id)}, trial {name.removeprefix(TRIAL_PREFIX)}"
    if name == CLUSTER:
        return f"{cluster_name(cluster_id)}, promoted trial"
    return LABELS.get(name, name)


def comparison_pairs(
    names: Sequence[str], *, cluster_id: int | None = None
) -> list[tuple[str, str]]:
    """The report's tested comparisons ``(a, b)``: exactly the decision rule's own
    (:func:`evaluators.report.decision.rule_comparisons`), the family of Holm's correction."""
    return decision.rule_comparisons(names, tuned_cluster=cluster_id)


def described_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """The report's described comparisons ``(a, b)``: every other row against the base model,
    with its unadjusted interval and no verdict (they are not hypotheses the decision tests)."""
    if BASE_MODEL not in names:
        return []
    return [(n, BASE_MODEL) for n in names if n != BASE_MODEL]


def described_differences(
    results: Mapping[str, MethodResult], pairs: Sequence[tuple[str, str]], *, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Differences ``a - b`` that describe the scale: unadjusted intervals, no verdict
    (``"tested": False``; no Holm p-value, no ``"beats"``)."""
    described = {}
    for a, b in pairs:
        diff = compare(results[a], results[b], seed=seed)
        described[f"{a} - {b}"] = {
            **diff.to_dict(),
            "mean_percent_points": round(100 * diff.mean, 2),
            "ci_percent_points": [round(100 * diff.low, 2), round(100 * diff.high, 2)],
            "tested": False,
        }
    return described
