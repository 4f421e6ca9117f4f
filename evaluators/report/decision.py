"""The original plan's decision rule, executed on our own measured numbers.

The rule (``/work/shared/evaluation.md``):

1. Cluster 4's promoted trial must beat the unified adapter and the cluster-0 adapter; ideally
   it reaches the plan's 85-87% range.
2. If it does, compare it with the MoE merge: the better of the two is the main result.
3. If it does not, cluster training is abandoned and MoE is the main result.

"Beat" means the confidence interval of the paired difference lies above 0 (Holm-corrected
among the report's comparisons), never a higher mean alone, and a degenerate method (one reply
repeated) never beats anything and is never the main result. The thresholds are our own
baselines, measured on the identical test examples; the plan's 82.14% (unified) and 72.65%
(cluster 0), measured on other test sets, appear as references only.

Pure: it takes the numbers and returns the branch, with no storage or model in sight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

CLUSTER = "cluster4_promoted"
"""Report name of the study's promoted cluster trial."""
UNIFIED = "unified_adapter"
CLUSTER0 = "cluster0_adapter"
MOE_SELF = "moe_self"
"""MoE with the persona's own adapter among the candidates: the MoE result of the rule."""
MOE_COLD = "moe_cold_start"
"""MoE without the persona's own adapter (a new persona): reported, not decisive."""

PLAN_UNIFIED = 0.8214
"""The plan's unified score (other test set): a reference only."""
PLAN_CLUSTER0 = 0.7265
"""The plan's cluster-0 score (other test set): a reference only."""
TARGET_RANGE = (0.85, 0.87)
"""The plan's hoped-for range for cluster 4: reported, not required."""

COMPARE_WITH_MOE = "cluster_beats_baselines_compare_with_moe"
MOE_MAIN = "cluster_fails_moe_is_main"
INCOMPLETE = "incomplete"
BRANCHES = (COMPARE_WITH_MOE, MOE_MAIN, INCOMPLETE)
"""Every branch :func:`decide` can take."""


@dataclass(frozen=True)
class Standing:
    """One method's overall score, as the rule needs it."""

    similarity: float
    """Mean similarity over personas, in [-1, 1]."""
    degenerate: bool = False
    """Whether the method mostly repeats one reply (it cannot win)."""


@dataclass(frozen=True)
class Paired:
    """The paired difference ``a - b`` on the identical examples."""

    mean: float
    low: float
    high: float
    beats: bool
    """Whether a beats b: interval above 0 after Holm, and a not degenerate."""
    p_holm: float | None = None
    """The Holm-corrected p-value of the difference, where known."""


@dataclass(frozen=True)
class Decision:
    """Which branch of the rule was taken, the main result, and the numbers behind it."""

    branch: str
    """One of :data:`BRANCHES`."""
    main_result: str | None
    """The method that is the main result, or None when the rule cannot name one."""
    reasons: list[str] = field(default_factory=list)
    """The steps of the rule, each with its numbers, in order."""
    numbers: dict[str, Any] = field(default_factory=dict)
    """The figures that decided (similarities, differences, references)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _diff_text(name: str, d: Paired) -> str:
    verdict = "beats" if d.beats else "does not beat"
    p = "" if d.p_holm is None else f", Holm p={d.p_holm:.3g}"
    return (
        f"{name}: {100 * d.mean:+.2f} pt, 95% CI [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"
        f"{p} ({verdict})"
    )


def _why_neither(d: Paired | None) -> str:
    """Why a difference that does not beat does not: its interval, or its Holm p-value."""
    if d is None or d.low <= 0 <= d.high:
        return "the 95% interval of the difference contains 0"
    p = "" if d.p_holm is None else f": Holm p={d.p_holm:.3g}"
    return (
        f"the interval excludes 0, but not after Holm's correction over the report's comparisons{p}"
    )


def decide(
    methods: Mapping[str, Standing],
    differences: Mapping[str, Paired],
    *,
    cluster: str = CLUSTER,
    unified: str = UNIFIED,
    cluster0: str = CLUSTER0,
    moe: str = MOE_SELF,
    target_range: tuple[float, float] = TARGET_RANGE,
) -> Decision:
    """Execute the plan's decision rule.

    Args:
        methods: Evaluated methods by report name (a method not evaluated is absent).
        differences: Paired differences by ``"a - b"`` name; the rule reads
            ``cluster - unified``, ``cluster - cluster0``, ``moe - cluster`` and
            ``cluster - moe``.
        cluster: The promoted cluster trial's name.
        unified: The unified adapter's name.
        cluster0: The cluster-0 adapter's name.
        moe: The MoE variant the rule compares with (with the persona's own adapter).
        target_range: The plan's hoped-for range, reported beside step 1.

    Returns:
        The decision. A step whose methods are not evaluated yet makes the branch
        :data:`INCOMPLETE`, naming what is missing, rather than guessing.

    Raises:
        ValueError: If ``target_range`` is not an increasing pair.
    """
    low, high = target_range
    if not low <= high:
        raise ValueError(
            f"invalid target_range={target_range!r}: expected (low, high), low <= high"
        )
    numbers: dict[str, Any] = {
        "plan_references": {"unified": PLAN_UNIFIED, "cluster0": PLAN_CLUSTER0},
        "target_range": [low, high],
    }
    for name in (cluster, unified, cluster0, moe):
        if name in methods:
            numbers[name] = asdict(methods[name])
    missing = [n for n in (cluster, unified, cluster0) if n not in methods]
    if missing:
        return Decision(
            INCOMPLETE,
            None,
            [f"step 1 needs {', '.join(missing)}: not evaluated yet"],
            numbers,
        )
    vs_unified = differences.get(f"{cluster} - {unified}")
    vs_cluster0 = differences.get(f"{cluster} - {cluster0}")
    if vs_unified is None or vs_cluster0 is None:
        absent = [
            n
            for n, d in (
                (f"{cluster} - {unified}", vs_unified),
                (f"{cluster} - {cluster0}", vs_cluster0),
            )
            if d is None
        ]
        return Decision(INCOMPLETE, None, [f"step 1 needs the differences {absent}"], numbers)
    numbers["step1"] = {
        f"{cluster} - {unified}": asdict(vs_unified),
        f"{cluster} - {cluster0}": asdict(vs_cluster0),
    }
    score = methods[cluster].similarity
    in_range = low <= score <= high
    reasons = [
        f"step 1: {cluster} scores {_pct(score)}; measured baselines: {unified} "
        f"{_pct(methods[unified].similarity)}, {cluster0} {_pct(methods[cluster0].similarity)} "
        f"(plan references, other test sets: {_pct(PLAN_UNIFIED)} and {_pct(PLAN_CLUSTER0)})",
        _diff_text(f"{cluster} - {unified}", vs_unified),
        _diff_text(f"{cluster} - {cluster0}", vs_cluster0),
        f"the plan's range {_pct(low)}-{_pct(high)}: " + ("reached" if in_range else "not reached"),
    ]
    passes = vs_unified.beats and vs_cluster0.beats and not methods[cluster].degenerate
    if methods[cluster].degenerate:
        reasons.append(f"{cluster} is degenerate (one reply repeated): it cannot win")

    moe_standing = methods.get(moe)
    if not passes:
        reasons.append(
            f"step 3: {cluster} does not beat both baselines: cluster training is "
            "abandoned and MoE is the main result"
        )
        if moe_standing is None:
            reasons.append(f"{moe} is not evaluated yet: no main result")
            return Decision(MOE_MAIN, None, reasons, numbers)
        if moe_standing.degenerate:
            reasons.append(f"{moe} is degenerate: it cannot be the main result")
            return Decision(MOE_MAIN, None, reasons, numbers)
        reasons.append(f"{moe} scores {_pct(moe_standing.similarity)}")
        return Decision(MOE_MAIN, moe, reasons, numbers)

    reasons.append(f"step 2: {cluster} beats both baselines: compare it with {moe}")
    if moe_standing is None:
        reasons.append(f"{moe} is not evaluated yet: {cluster} stands as the main result")
        return Decision(COMPARE_WITH_MOE, cluster, reasons, numbers)
    moe_vs = differences.get(f"{moe} - {cluster}")
    cluster_vs = differences.get(f"{cluster} - {moe}")
    numbers["step2"] = {
        k: asdict(v)
        for k, v in ((f"{moe} - {cluster}", moe_vs), (f"{cluster} - {moe}", cluster_vs))
        if v is not None
    }
    if moe_vs is not None:
        reasons.append(_diff_text(f"{moe} - {cluster}", moe_vs))
    if moe_standing.degenerate:
        reasons.append(f"{moe} is degenerate: it cannot win; {cluster} is the main result")
        return Decision(COMPARE_WITH_MOE, cluster, reasons, numbers)
    if moe_vs is not None and moe_vs.beats:
        reasons.append(f"{moe} beats {cluster}: MoE is the main result")
        return Decision(COMPARE_WITH_MOE, moe, reasons, numbers)
    if cluster_vs is not None and cluster_vs.beats:
        reasons.append(f"{cluster} beats {moe}: the cluster adapter is the main result")
        return Decision(COMPARE_WITH_MOE, cluster, reasons, numbers)
    winner = moe if moe_standing.similarity > score else cluster
    reasons.append(
        f"neither beats the other ({_why_neither(moe_vs or cluster_vs)}); the higher mean, "
        f"{winner}, is the main result, without a significant difference"
    )
    return Decision(COMPARE_WITH_MOE, winner, reasons, numbers)
