"""The families of Holm's correction, one per results file, each named for what it is.

A pair of methods can be tested in two families: the evaluator's promotion compares the
promoted trial with the rule's baselines (3 comparisons), and the report's decision tests the
same pairs beside the MoE comparisons (6). Holm's correction over 3 and over 6 gives the same
comparison two Holm p-values, so the two families never share a key: each file holds one, names
it in ``tested_family``, keeps its comparisons under that name and says in ``family_note``
which other family tests the same pairs (docs/evaluation.md, "One family per file").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FAMILY_KEY = "tested_family"
"""The key of a results file that names its one family."""

DECISION_FAMILY = "decision_comparisons"
"""The report's family (``comparison/comprehensive_comparison.json``): the decision rule's own
comparisons, :func:`evaluators.report.decision.rule_comparisons`."""
DECISION_NOTE = (
    "Holm's correction runs over these {n} comparisons, the decision rule's own, and nothing "
    "else. The promotion's results file (cluster_lora/cluster_lora_results.json) tests some of "
    "the same pairs in a smaller family, promotion_comparisons, so its Holm p-values are "
    "smaller; the verdicts here are the decision's, and the ones that count."
)

PROMOTION_FAMILY = "promotion_comparisons"
"""The promotion's family (``cluster_lora/cluster_lora_results.json``, and
:func:`evaluators.baselines.suite.baseline_report`): the promoted trial against the rule's
baselines (the unified adapter, the cluster-0 adapter and the base model, those present)."""
PROMOTION_NOTE = (
    "Holm's correction runs over these {n} comparisons of the promoted trial against the "
    "decision rule's baselines, and nothing else. The report (comparison/"
    "comprehensive_comparison.json) tests the same pairs again in the decision's family, "
    "decision_comparisons, beside the MoE comparisons: its Holm p-values are larger, and its "
    "verdicts are the ones that count."
)

ADAPTER_FAMILY = "adapter_comparisons"
"""The family of an adapter evaluated by hand (``cluster_lora/<method>_results.json``): the
adapter against the rule's baselines."""
ADAPTER_NOTE = (
    "Holm's correction runs over these {n} comparisons of this adapter against the decision "
    "rule's baselines, and nothing else. The adapter is no trial of the study: the decision "
    "(hpo report) never tests it."
)


def family_fields(family: str, comparisons: Mapping[str, Any], note: str) -> dict[str, Any]:
    """A results file's one tested family: ``tested_family`` (its name), ``family_note`` (what
    it is; ``{n}`` in ``note`` becomes the number of comparisons) and the comparisons under the
    family's name, in order.
    """
    return {
        FAMILY_KEY: family,
        "family_note": note.format(n=len(comparisons)),
        family: dict(comparisons),
    }
