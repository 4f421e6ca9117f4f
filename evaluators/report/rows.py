"""The rows of the comparison report (:mod:`evaluators.report.build`): which methods, in which
order, under which labels, and which pairs are compared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evaluators.baselines.suite import BASE_MODEL, CEILING, CLUSTER0, COPY_PERSONA, SWAPPED, UNIFIED
from evaluators.moe.run import PERSONA_ADAPTERS
from evaluators.report import decision
from evaluators.report.decision import MOE_COLD, MOE_SELF

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
