"""SemScore: cosine similarity with the packaged embedding model, and the per-persona means."""

from __future__ import annotations

import math

import pytest

from evaluators.scoring.similarity import macro_mean, pairwise_similarity, persona_means


def test_identical_texts_score_one() -> None:
    texts = ["I love hiking mountain trails.", "My cat sleeps all day."]
    scores = pairwise_similarity(texts, texts)
    assert scores.shape == (2,)
    assert scores == pytest.approx([1.0, 1.0], abs=1e-4)


def test_related_scores_higher_than_unrelated() -> None:
    reference = "I spend my weekends hiking in the mountains."
    related = "Mostly I go hiking on mountain trails on Saturdays."
    unrelated = "The quarterly tax report is due to the accountant."
    scores = pairwise_similarity([related, unrelated], [reference, reference])
    assert all(-1.0 - 1e-6 <= s <= 1.0 + 1e-6 for s in scores)
    assert scores[0] > scores[1] + 0.2


def test_order_matches_inputs() -> None:
    generated = ["I have a cat.", "I play the guitar."]
    references = ["I play the guitar.", "I have a cat."]
    swapped = pairwise_similarity(generated, references)
    aligned = pairwise_similarity(generated, generated)
    assert all(s < a for s, a in zip(swapped, aligned, strict=True))


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="2 generated texts but 1 references"):
        pairwise_similarity(["a", "b"], ["a"])


def test_empty_input_gives_empty_array() -> None:
    assert pairwise_similarity([], []).shape == (0,)


def test_persona_means_and_macro_mean() -> None:
    means = persona_means(["p1", "p0", "p1", "p1"], [0.2, 0.5, 0.4, 0.9])
    assert list(means) == ["p0", "p1"]
    assert means["p0"] == pytest.approx(0.5)
    assert means["p1"] == pytest.approx(0.5)
    # Each persona weighs the same, unlike the mean over examples (0.5 here too) ...
    assert macro_mean(means) == pytest.approx(0.5)
    # ... which differs when personas have different counts.
    skewed = persona_means(["a", "a", "a", "b"], [1.0, 1.0, 1.0, 0.0])
    assert macro_mean(skewed) == pytest.approx(0.5)


def test_persona_means_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        persona_means(["p0"], [0.1, 0.2])


def test_macro_mean_of_nothing_is_nan() -> None:
    assert math.isnan(macro_mean({}))


def test_floor_and_ceiling_on_real_embeddings() -> None:
    from evaluators.scoring.similarity import normalized, reference_ceiling, similarity_floor

    keys = ["hiker", "hiker", "cook", "cook"]
    references = [
        "I went hiking in the mountains this weekend.",
        "Climbing a steep mountain trail is my favourite hobby.",
        "I baked fresh sourdough bread this morning.",
        "Cooking pasta for my family makes me happy.",
    ]
    generated = [
        "I love hiking up mountain trails.",
        "The mountains are where I go hiking.",
        "I bake bread in my kitchen.",
        "I cook pasta every day.",
    ]
    own = float(pairwise_similarity(generated, references).mean())
    floor = similarity_floor(generated, references, keys)
    ceiling = reference_ceiling(references, keys)
    assert floor < own, (floor, own)
    assert floor < ceiling
    assert 0 < normalized(own, floor) < 1
    assert normalized(floor, floor) == 0
