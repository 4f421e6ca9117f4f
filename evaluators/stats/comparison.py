"""Paired comparisons of evaluated methods on the identical examples, each tested against a
minimum effect, Holm-corrected.

Two methods are compared only on the examples both scored (:func:`compare` refuses anything
else); :func:`paired_comparisons` gives typed :class:`Comparison` results and
:func:`compare_methods` their JSON form, as the results files store it. A tested comparison
is a superiority-by-margin test: ``a`` beats ``b`` when the 95% interval of ``a - b`` lies
above the minimum effect (``min_effect``, in percentage points of similarity;
:attr:`evaluators.config.EvalConfig.min_effect`) and the Holm p-value of the one-sided test of
"a - b > min_effect" is below 0.05.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evaluators.stats.estimates import Difference, beats, holm_corrected, paired_difference

if TYPE_CHECKING:
    from evaluators.scoring.method_run import MethodResult


def compare(
    a: MethodResult, b: MethodResult, *, seed: int = 0, min_effect: float | None = None
) -> Difference:
    """The paired difference ``a - b`` in similarity, on the examples both methods scored,
    tested against ``min_effect`` percentage points where one is given.

    Raises:
        ValueError: If the two methods were not scored on the same examples (a comparison
            on different test sets is what this project refuses to make).
    """
    by_id = {s.example_id: s for s in b.scores}
    missing = {s.example_id for s in a.scores} ^ set(by_id)
    if missing:
        raise ValueError(
            f"{a.method} and {b.method} were scored on different examples "
            f"({len(missing)} not in both, e.g. example {min(missing)}): not comparable"
        )
    return paired_difference(
        [s.similarity for s in a.scores],
        [by_id[s.example_id].similarity for s in a.scores],
        [s.persona_key for s in a.scores],
        seed=seed,
        margin=None if min_effect is None else min_effect / 100,
    )


@dataclass(frozen=True)
class Comparison:
    """One paired comparison ``a - b`` of two methods on the same examples."""

    name: str
    """``"a - b"``."""
    difference: Difference
    """The paired difference of similarity, tested against the minimum effect and
    Holm-corrected among its comparisons."""
    beats: bool
    """Whether ``a`` beats ``b`` by more than the minimum effect:
    :func:`evaluators.stats.estimates.beats` holds and ``a`` is not degenerate."""

    @property
    def mean_percent_points(self) -> float:
        """The mean difference in percent points, to two decimals."""
        return round(100 * self.difference.mean, 2)

    @property
    def ci_percent_points(self) -> tuple[float, float]:
        """The interval of the difference in percent points, to two decimals."""
        return round(100 * self.difference.low, 2), round(100 * self.difference.high, 2)

    @property
    def min_effect(self) -> float:
        """The minimum effect the difference was tested against, in percent points."""
        margin = self.difference.margin
        return 0.0 if margin is None else round(100 * margin, 6)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the difference's fields, then the percent points (the minimum
        effect among them) and ``beats``."""
        return {
            **self.difference.to_dict(),
            "mean_percent_points": self.mean_percent_points,
            "ci_percent_points": list(self.ci_percent_points),
            "min_effect_percent_points": self.min_effect,
            "beats": self.beats,
        }


def paired_comparisons(
    results: Mapping[str, MethodResult],
    pairs: Sequence[tuple[str, str]],
    *,
    min_effect: float,
    seed: int = 0,
) -> dict[str, Comparison]:
    """Paired comparisons ``a - b`` of methods, each tested against the minimum effect,
    Holm-corrected among themselves.

    A method beats another when :func:`evaluators.stats.estimates.beats` holds for the difference
    (its interval above ``min_effect``, the Holm p-value of "a - b > min_effect" below 0.05) and
    the method is not degenerate (its one common reply would win by repeating itself).

    Args:
        results: Evaluated methods by name, all on the same examples.
        pairs: ``(a, b)`` names to compare, each a one-sided hypothesis "a beats b".
        min_effect: The minimum effect, in percentage points of similarity (>= 0).
        seed: Seed of the resampling.

    Returns:
        For each pair, named ``"a - b"``, its :class:`Comparison`.

    Raises:
        ValueError: If a pair names a method not in ``results``, or two methods were scored
            on different examples.
    """
    for name in {n for pair in pairs for n in pair}:
        if name not in results:
            raise ValueError(f"no evaluated method {name!r} to compare; have {sorted(results)}")
    diffs = holm_corrected(
        {
            f"{a} - {b}": compare(results[a], results[b], seed=seed, min_effect=min_effect)
            for a, b in pairs
        }
    )
    return {
        name: Comparison(name, diff, beats(diff) and not results[a].diversity.degenerate)
        for (a, _), (name, diff) in zip(pairs, diffs.items(), strict=True)
    }


def compare_methods(
    results: Mapping[str, MethodResult],
    pairs: Sequence[tuple[str, str]],
    *,
    min_effect: float,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """The JSON form of :func:`paired_comparisons`: for each pair, named ``"a - b"``, the
    difference (also in percent points), its interval, p-values (of no difference, and of the
    margin test), Holm p-value, the minimum effect and ``"beats"``.
    """
    found = paired_comparisons(results, pairs, min_effect=min_effect, seed=seed)
    return {name: comparison.to_dict() for name, comparison in found.items()}
