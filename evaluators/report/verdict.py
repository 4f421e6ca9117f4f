"""The words of a verdict: one tested comparison of the decision rule
(:mod:`evaluators.report.decision`) as people read it, and why a difference does not beat.

A verdict of "beats" is a win by more than the minimum effect (docs/evaluation.md); a verdict of
"does not beat" names every reason that holds, so that an interval above the minimum effect
never stands beside it unexplained. Pure: numbers in, sentences out.
"""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 0.05
"""A difference beats only with its Holm p-value below this (and its 95% CI above the minimum
effect)."""


@dataclass(frozen=True)
class Paired:
    """The paired difference ``a - b`` on the identical examples."""

    mean: float
    low: float
    high: float
    beats: bool
    """Whether a beats b: interval above the minimum effect, Holm p below 0.05, and a not
    degenerate."""
    p_holm: float | None = None
    """The Holm-corrected p-value of the difference, where known."""
    p_value: float | None = None
    """The p-value of the test before Holm's correction (the one-sided test of "a - b > margin"),
    where known (printed beside the Holm one)."""
    margin: float = 0.0
    """The minimum effect the difference was tested against, in similarity units (0.02: 2
    points)."""


def _points(margin: float) -> str:
    return f"{100 * margin:.1f} points"


def why_not(
    low: float, high: float, *, margin: float, p_holm: float | None, degenerate: bool = False
) -> str:
    """Why a tested difference ``a - b`` that does not beat does not, in words: every reason
    that holds (an interval above the minimum effect never stands beside "does not beat"
    without saying why). Arguments in similarity units."""
    if high < 0:
        return "the interval lies below 0"
    if low <= 0:
        return "the interval contains 0"
    if low <= margin:
        return f"the interval lies above 0 but not above the minimum effect of {_points(margin)}"
    above = f"above the minimum effect of {_points(margin)}" if margin > 0 else "above 0"
    why = [f"the interval lies {above}, but Holm p >= {ALPHA}"]
    if p_holm is None or p_holm < ALPHA:
        why = []
    if degenerate or not why:
        why.append("it is degenerate: one reply repeated")
    return ", and ".join(why)


def diff_text(a: str, b: str, d: Paired, *, degenerate: bool = False) -> str:
    """One tested comparison as a sentence: the verdict (with the minimum effect, and the
    reason where it does not beat), then the difference, its unadjusted interval and both
    p-values, labelled."""
    p = "" if d.p_value is None else f", p={d.p_value:.3g} (one-sided)"
    p += "" if d.p_holm is None else f", Holm p={d.p_holm:.3g}"
    by = by_min_effect(d)
    if d.beats:
        head = f"{a} beats {b}{by}"
    else:
        why = why_not(d.low, d.high, margin=d.margin, p_holm=d.p_holm, degenerate=degenerate)
        head = f"{a} does not beat {b}{by} ({why})"
    return (
        f"{head}: {100 * d.mean:+.2f} pt, 95% CI (unadjusted) [{100 * d.low:+.2f}, "
        f"{100 * d.high:+.2f}]{p}"
    )


def why_neither(d: Paired | None) -> str:
    """Why neither of two methods beats the other, from ``a - b``: its interval does not lie
    beyond the minimum effect either way, or it does but not after Holm's correction."""
    if d is None or (d.low <= d.margin and d.high >= -d.margin):
        if d is None or d.margin == 0:
            return "the 95% interval of the difference contains 0"
        return (
            f"the 95% interval of the difference, [{100 * d.low:+.2f}, {100 * d.high:+.2f}], "
            f"does not lie beyond the minimum effect of {_points(d.margin)} either way"
        )
    p = "" if d.p_holm is None else f": Holm p={d.p_holm:.3g}"
    beyond = "0" if d.margin == 0 else "the minimum effect"
    return (
        f"the interval lies beyond {beyond}, but not after Holm's correction over the rule's "
        f"comparisons{p}"
    )


def by_min_effect(d: Paired) -> str:
    """`` by more than the minimum effect of N points`` for a difference tested against one."""
    return f" by more than the minimum effect of {_points(d.margin)}" if d.margin > 0 else ""
