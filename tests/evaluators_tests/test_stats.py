"""Persona-level paired statistics on synthetic scores with known answers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from evaluators.stats.estimates import (
    Difference,
    beats,
    holm,
    holm_corrected,
    mean_ci,
    paired_difference,
)

N_PERSONAS, PER_PERSONA = 40, 10


def _scores(seed: int, shift: float) -> tuple[Any, Any, Any]:
    """Method a and b on the same examples: a persona effect shared by both, example noise,
    and b lower than a by ``shift``."""
    rng = np.random.default_rng(seed)
    personas = np.repeat(np.arange(N_PERSONAS), PER_PERSONA)
    persona_effect = rng.normal(0.5, 0.1, N_PERSONAS)[personas]
    a = persona_effect + rng.normal(0, 0.05, personas.size)
    b = persona_effect - shift + rng.normal(0, 0.05, personas.size)
    return a, b, [f"p{p:02d}" for p in personas]


def test_a_known_shift_is_found_and_beats() -> None:
    a, b, personas = _scores(seed=0, shift=0.05)
    diff = paired_difference(a, b, personas)
    assert diff.n_personas == N_PERSONAS and diff.confidence == 0.95
    assert diff.low < 0.05 < diff.high
    assert 0 < diff.low < diff.mean < diff.high
    assert diff.mean == pytest.approx(0.05, abs=0.01)
    assert diff.p_value < 0.001
    assert beats(diff)
    assert not beats(paired_difference(b, a, personas))  # the other way round loses


def test_zero_shift_intervals_cover_zero() -> None:
    covered = [
        paired_difference(*_scores(seed, shift=0.0), n_resamples=2000, seed=seed)
        for seed in range(20)
    ]
    hits = sum(d.low <= 0 <= d.high for d in covered)
    assert hits >= 17, [(d.low, d.high) for d in covered]  # 95% nominal: 19 expected
    assert not any(beats(d) for d in covered if d.low <= 0)


def test_identical_methods_differ_by_exactly_zero() -> None:
    a, _, personas = _scores(seed=1, shift=0.0)
    diff = paired_difference(a, a, personas)
    assert (diff.mean, diff.low, diff.high, diff.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not beats(diff)


def test_resampling_is_by_persona_not_by_example() -> None:
    """Examples within a persona are perfectly correlated (all equal): ten copies of one
    number carry one number's information, so the interval must be as wide as one from the
    40 persona means, not sqrt(10) narrower as an example-level bootstrap would make it."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(5)
    persona_means = rng.normal(0.6, 0.1, N_PERSONAS)
    personas = np.repeat(np.arange(N_PERSONAS), PER_PERSONA)
    scores = persona_means[personas]
    ours = mean_ci(scores, personas, seed=0)
    ours_width = ours.high - ours.low
    analytic = 2 * 1.96 * persona_means.std(ddof=1) / math.sqrt(N_PERSONAS)
    assert ours_width == pytest.approx(analytic, rel=0.15)
    by_example = bootstrap((scores,), np.mean, n_resamples=10_000, rng=0).confidence_interval
    ratio = ours_width / (by_example.high - by_example.low)
    assert ratio == pytest.approx(math.sqrt(PER_PERSONA), rel=0.15)

    # the same holds for a paired difference whose per-example differences are persona-wide
    shifts = rng.normal(0.02, 0.05, N_PERSONAS)
    diff = paired_difference(scores + shifts[personas], scores, personas)
    diff_analytic = 2 * 1.96 * shifts.std(ddof=1) / math.sqrt(N_PERSONAS)
    assert diff.high - diff.low == pytest.approx(diff_analytic, rel=0.15)


def test_each_persona_weighs_the_same() -> None:
    scores = [1.0] * 9 + [0.0] + [0.5]
    personas = ["many"] * 9 + ["one", "other"]
    estimate = mean_ci(scores, personas, n_resamples=2000)
    assert estimate.mean == pytest.approx(0.5)  # the example mean would be 0.86
    assert estimate.n_personas == 3
    assert 0.0 <= estimate.low <= estimate.mean <= estimate.high <= 1.0


def test_seeded_and_reproducible() -> None:
    a, b, personas = _scores(seed=2, shift=0.01)
    first = paired_difference(a, b, personas, n_resamples=3000, seed=11)
    assert paired_difference(a, b, personas, n_resamples=3000, seed=11) == first
    other = paired_difference(a, b, personas, n_resamples=3000, seed=12)
    assert (other.low, other.high) != (first.low, first.high)
    assert other.mean == first.mean


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: paired_difference([0.1, 0.2], [0.1], ["p", "q"]), "1 scores but 2 persona ids"),
        (lambda: mean_ci([0.1, 0.2], ["p", "p"]), "at least 2 personas, got 1"),
        (lambda: mean_ci([0.1, float("nan")], ["p", "q"]), "finite numbers, got nan"),
        (lambda: mean_ci([0.1, 0.2], ["p", "q"], n_resamples=0), "n_resamples=0"),
        (lambda: mean_ci([0.1, 0.2], ["p", "q"], confidence=95), "confidence=95"),
    ],
)
def test_bad_input_is_named(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_holm_by_hand() -> None:
    # sorted: 0.01 x4 = 0.04; 0.03 x3 = 0.09; 0.04 x2 = 0.08 -> 0.09 (monotone); 0.5 x1
    assert holm([0.04, 0.01, 0.5, 0.03]) == pytest.approx([0.09, 0.04, 0.5, 0.09])
    assert holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02]) == [0.02]  # one comparison: unchanged
    assert holm([]) == []
    with pytest.raises(ValueError, match=r"p-value 1\.5"):
        holm([0.1, 1.5])


def _diff(low: float, p: float) -> Difference:
    return Difference(
        mean=low + 0.01, low=low, high=low + 0.02, p_value=p, n_personas=10, confidence=0.95
    )


def test_holm_can_take_away_a_win() -> None:
    diffs = {"x - base": _diff(0.001, 0.03), "y - base": _diff(0.001, 0.04)}
    assert all(beats(d) for d in diffs.values())  # alone, each CI lies above zero
    corrected = holm_corrected(diffs)
    assert [d.p_holm for d in corrected.values()] == pytest.approx([0.06, 0.06])
    assert not any(beats(d) for d in corrected.values())
    assert corrected["x - base"].p_value == 0.03  # the raw p-value is kept


def test_a_higher_mean_alone_does_not_beat() -> None:
    assert not beats(_diff(-0.001, 0.2))
    assert not beats(_diff(0.0, 0.04))


# --- the minimum effect: superiority by a margin ------------------------------------------


def _shifted(shift: float, spread: float, seed: int = 3) -> tuple[Any, Any, Any]:
    """b, and a = b + shift with a per-persona spread of the shift (``spread``)."""
    rng = np.random.default_rng(seed)
    personas = np.repeat(np.arange(N_PERSONAS), PER_PERSONA)
    b = rng.normal(0.5, 0.1, N_PERSONAS)[personas] + rng.normal(0, 0.05, personas.size)
    a = b + shift + rng.normal(0, spread, N_PERSONAS)[personas]
    return a, b, [f"p{p:02d}" for p in personas]


def test_a_tiny_difference_with_tiny_variance_does_not_beat_a_margin() -> None:
    """The issue's case: MoE with self at +0.22 pt over the base model with paired differences
    of tiny variance. Without a margin it would beat (interval above 0, p tiny); at the
    minimum effect of 2 points it does not, and its one-sided p of "> 2 points" is 1."""
    a, b, personas = _shifted(0.0022, 0.0005)
    without = paired_difference(a, b, personas, margin=0.0)
    assert without.low > 0 and without.p_margin is not None and without.p_margin < 0.001
    assert beats(without)
    at_two = paired_difference(a, b, personas, margin=0.02)
    assert at_two.mean == pytest.approx(0.0022, abs=0.0005)
    assert 0 < at_two.low < at_two.high < 0.02
    assert at_two.p_margin == 1.0 and at_two.margin == 0.02
    assert not beats(at_two)
    assert not beats(holm_corrected({"moe - base": at_two})["moe - base"])


def test_a_difference_above_the_margin_beats() -> None:
    """+3 points with its interval near [+2.4, +3.8] beats at the margin of 2 points, and
    not at a margin of 3.5 (the interval is no longer above it)."""
    a, b, personas = _shifted(0.031, 0.022)
    diff = paired_difference(a, b, personas, margin=0.02)
    assert 0.02 < diff.low < diff.mean < diff.high
    assert diff.mean == pytest.approx(0.031, abs=0.006)
    assert diff.p_margin is not None and diff.p_margin < 0.05
    assert beats(diff)
    corrected = holm_corrected({"x - base": diff, "y - base": diff})["x - base"]
    assert corrected.p_holm == pytest.approx(2 * diff.p_margin)  # Holm corrects the margin p
    assert not beats(paired_difference(a, b, personas, margin=0.035))


def test_the_margin_test_holds_its_level_at_the_margin() -> None:
    """A true difference of exactly the margin: the one-sided test rejects at most about 5%
    of the time (20 seeds: at most 3 rejections, 1 expected), and beats never more often."""
    rejections = 0
    for seed in range(20):
        a, b, personas = _shifted(0.02, 0.02, seed=seed)
        diff = paired_difference(a, b, personas, margin=0.02, n_resamples=2000, seed=seed)
        assert diff.p_margin is not None
        rejections += diff.p_margin < 0.05
        assert not beats(diff) or diff.p_margin < 0.05
    assert rejections <= 3


def test_a_margin_is_checked() -> None:
    a, b, personas = _shifted(0.01, 0.01)
    with pytest.raises(ValueError, match=r"invalid margin=-0\.01: expected a finite number >= 0"):
        paired_difference(a, b, personas, margin=-0.01)
    described = paired_difference(a, b, personas)
    assert described.margin is None and described.p_margin is None
    assert described.p_tested == described.p_value
