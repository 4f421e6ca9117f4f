"""Paired, persona-level statistics for comparing methods on the same test examples.

The replies of one persona are correlated (same persona text, same style), so the unit of
resampling is the persona, not the example: each method's scores are first averaged per
persona, and the bootstrap draws personas with replacement. Resampling examples instead would
treat ten correlated replies as ten independent ones and give intervals up to sqrt(10) too
narrow. A difference between two methods is paired: both are scored on the identical
examples, and a resampled persona brings both of its means.

- The confidence interval of a mean or a difference: ``scipy.stats.bootstrap`` (BCa) over
  personas, 10,000 resamples by default, seeded.
- The p-value of a difference: ``scipy.stats.permutation_test`` over personas, swapping the
  two methods' means within a persona (a paired sign-flip test; exact when the personas are
  few enough to list every swap).
- A superiority-by-margin test: given a minimum effect ``margin``, the one-sided p-value of
  "a - b > margin" (the same sign-flip test on the persona differences less the margin).
- Several comparisons: Holm's step-down correction of those p-values (:func:`holm`); of the
  margin tests where there are any.
- :func:`beats`: the difference's interval lies above the margin (zero without one) and, when
  corrected, its Holm p-value is below ``1 - confidence``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

N_RESAMPLES = 10_000
"""Bootstrap and permutation resamples: Monte Carlo error of a 95% bound well under 0.1 pt."""
CONFIDENCE = 0.95
"""Confidence level of the intervals; ``1 - CONFIDENCE`` is the test level of :func:`beats`."""


@dataclass(frozen=True)
class Estimate:
    """A persona-level mean with its bootstrap confidence interval."""

    mean: float
    """Mean over personas of the per-persona mean."""
    low: float
    """Lower bound of the interval."""
    high: float
    """Upper bound of the interval."""
    n_personas: int
    """Personas (the resampled units)."""
    confidence: float
    """Confidence level of the interval."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Difference:
    """A paired difference ``a - b`` of persona-level means, with its interval and p-value."""

    mean: float
    """Mean over personas of (a's persona mean - b's persona mean)."""
    low: float
    """Lower bound of the interval of the difference."""
    high: float
    """Upper bound of the interval of the difference."""
    p_value: float
    """Two-sided p-value of "no difference" (paired permutation test over personas)."""
    n_personas: int
    """Personas (the resampled units)."""
    confidence: float
    """Confidence level of the interval."""
    p_holm: float | None = None
    """The p-value after Holm's correction among several comparisons (of ``p_margin`` where
    there is one, else of ``p_value``); None if uncorrected."""
    margin: float | None = None
    """The minimum effect the difference was tested against, in similarity units (0.02 is 2
    points); None: not tested against one (a described difference)."""
    p_margin: float | None = None
    """One-sided p-value of "a - b > margin" (paired permutation test over personas of the
    persona differences less the margin); None without a margin."""

    @property
    def p_tested(self) -> float:
        """The p-value of the difference's own test, before Holm: ``p_margin`` where it was
        tested against a margin, else ``p_value``."""
        return self.p_value if self.p_margin is None else self.p_margin

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


def _persona_means(columns: Sequence[Sequence[float]], persona_ids: Sequence[Any]) -> list[Any]:
    """Per-persona means of each column, personas in a fixed (sorted) order."""
    import numpy as np

    n = len(persona_ids)
    for column in columns:
        if len(column) != n:
            raise ValueError(f"{len(column)} scores but {n} persona ids: they must pair up")
    ids = np.asarray([str(p) for p in persona_ids])
    personas, index = np.unique(ids, return_inverse=True)
    if len(personas) < 2:
        raise ValueError(f"persona-level statistics need at least 2 personas, got {len(personas)}")
    counts = np.bincount(index)
    means = []
    for column in columns:
        values = np.asarray(column, dtype=float)
        if not np.isfinite(values).all():
            bad = values[~np.isfinite(values)][0]
            raise ValueError(f"scores must be finite numbers, got {bad}")
        means.append(np.bincount(index, weights=values) / counts)
    return means


def _check_options(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"invalid n_resamples={n_resamples!r}: expected an integer >= 1")
    if not 0 < confidence < 1:
        raise ValueError(f"invalid confidence={confidence!r}: expected a number in (0, 1)")


def _interval(
    data: tuple[Any, ...], statistic: Any, n_resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """BCa bootstrap interval over personas (the entries of each array in ``data``)."""
    import numpy as np
    from scipy.stats import bootstrap

    point = float(statistic(*data, axis=-1))
    # BCa is undefined when every resample gives the same value (scipy returns NaN with a
    # warning); the interval of a constant is the constant itself.
    spread = data[0] - data[1] if len(data) == 2 else data[0]
    if np.ptp(spread) == 0:
        return point, point
    result = bootstrap(
        data,
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        paired=len(data) > 1,
        vectorized=True,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _mean(x: Any, axis: int = -1) -> Any:
    import numpy as np

    return np.mean(x, axis=axis)


def _mean_difference(a: Any, b: Any, axis: int = -1) -> Any:
    import numpy as np

    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def mean_ci(
    per_example: Sequence[float],
    persona_ids: Sequence[Any],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """The mean over personas of one method's scores, with a persona-level bootstrap CI.

    Args:
        per_example: One score per example.
        persona_ids: The persona of each example.
        n_resamples: Bootstrap resamples.
        confidence: Confidence level of the interval.
        seed: Seed of the resampling.

    Raises:
        ValueError: If the lengths differ, a score is not finite, there are fewer than two
            personas, or an option is out of range.
    """
    _check_options(n_resamples, confidence)
    (means,) = _persona_means([per_example], persona_ids)
    low, high = _interval((means,), _mean, n_resamples, confidence, seed)
    return Estimate(float(means.mean()), low, high, len(means), confidence)


def paired_difference(
    per_example_a: Sequence[float],
    per_example_b: Sequence[float],
    persona_ids: Sequence[Any],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    margin: float | None = None,
) -> Difference:
    """The paired difference ``a - b`` of two methods scored on the same examples.

    Args:
        per_example_a: Method a's score of each example.
        per_example_b: Method b's score of the same examples, in the same order.
        persona_ids: The persona of each example.
        n_resamples: Bootstrap and permutation resamples.
        confidence: Confidence level of the interval.
        seed: Seed of the resampling.
        margin: A minimum effect, in similarity units, to test the difference against
            (superiority by a margin): ``p_margin`` is the one-sided p-value of
            "a - b > margin". None: no such test (a difference that is only described).

    Returns:
        The mean difference over personas, its BCa interval from a bootstrap over personas,
        the two-sided p-value of "no difference" (a paired permutation test over personas)
        and, with a margin, the one-sided p-value of "a - b > margin".

    Raises:
        ValueError: If the lengths differ, a score is not finite, there are fewer than two
            personas, or an option is out of range.
    """
    import numpy as np

    _check_options(n_resamples, confidence)
    if margin is not None and not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f"invalid margin={margin!r}: expected a finite number >= 0, or None")
    a, b = _persona_means([per_example_a, per_example_b], persona_ids)
    low, high = _interval((a, b), _mean_difference, n_resamples, confidence, seed)
    p_value = _sign_flip_p(a - b, "two-sided", n_resamples, seed)
    p_margin = (
        None if margin is None else _sign_flip_p(a - b - margin, "greater", n_resamples, seed)
    )
    return Difference(
        float(np.mean(a - b)),
        low,
        high,
        p_value,
        len(a),
        confidence,
        margin=margin,
        p_margin=p_margin,
    )


def _sign_flip_p(differences: Any, alternative: str, n_resamples: int, seed: int) -> float:
    """p-value of a paired permutation test of the per-persona ``differences`` against 0:
    each persona's difference keeps or flips its sign (scipy's ``permutation_test`` swapping
    the pair within a persona; exact when the personas are few enough to list every swap).
    Under "a - b <= margin" shifted by the margin, the differences less the margin are
    symmetric about at most 0, the usual assumption of a paired shift test."""
    import numpy as np
    from scipy.stats import permutation_test

    if not np.any(differences):
        return 1.0  # all zero: no swap changes anything
    test = permutation_test(
        (differences, np.zeros_like(differences)),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative=alternative,
        rng=np.random.default_rng(seed),
    )
    return float(test.pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Holm, S. (1979), "A simple sequentially rejective multiple test procedure", Scand. J.
    Statist. 6: 65-70. Sorted ascending, the i-th of m p-values (i from 0) is multiplied by
    ``m - i``; each adjusted value is at least the one before it, and at most 1. Rejecting
    where the adjusted value is below alpha controls the family-wise error rate at alpha.
    (scipy has no Holm; statsmodels' ``multipletests(method="holm")`` computes the same.)

    Raises:
        ValueError: If a p-value is outside [0, 1].
    """
    for p in p_values:
        if not 0 <= p <= 1:
            raise ValueError(f"invalid p-value {p!r}: expected a number in [0, 1]")
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm_corrected(differences: Mapping[str, Difference]) -> dict[str, Difference]:
    """The same differences with ``p_holm`` set, corrected among all of them: the p-values
    of their own tests (:attr:`Difference.p_tested`: the margin test's where there is one)."""
    names = list(differences)
    adjusted = holm([differences[n].p_tested for n in names])
    return {
        n: dataclasses.replace(differences[n], p_holm=p)
        for n, p in zip(names, adjusted, strict=True)
    }


def beats(difference: Difference) -> bool:
    """Whether a beats b: the interval of ``a - b`` lies above the minimum effect it was
    tested against (above zero without one), and, when the difference was Holm-corrected
    among several comparisons, its corrected p-value is below ``1 - confidence``. A higher
    mean alone is not enough, nor a difference too small to matter."""
    margin = 0.0 if difference.margin is None else difference.margin
    if difference.low <= margin:
        return False
    return difference.p_holm is None or difference.p_holm < 1 - difference.confidence
