"""The MoE router: top-k personas by cosine similarity, softmax or normalized weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluators.moe.router import route


def _unit(rows: list[list[float]]) -> np.ndarray:
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


# Row 0 and 1 are close, row 2 a bit further, row 3 orthogonal-ish, row 4 opposite of row 0.
VECTORS = _unit(
    [
        [1.0, 0.0, 0.0],
        [0.95, 0.3, 0.0],
        [0.7, 0.7, 0.1],
        [0.0, 0.2, 1.0],
        [-1.0, 0.1, 0.0],
    ]
)


def test_sources_are_the_k_most_similar_with_self_first() -> None:
    routes = route(VECTORS, k=3)
    assert [r.target for r in routes] == [0, 1, 2, 3, 4]
    assert routes[0].sources == (0, 1, 2)
    assert routes[3].sources[0] == 3
    for r in routes:
        sims = VECTORS[list(r.sources)] @ VECTORS[r.target]
        assert np.allclose(r.similarities, sims, atol=1e-6)
        assert list(r.similarities) == sorted(r.similarities, reverse=True)


def test_cold_start_never_picks_the_target_itself() -> None:
    routes = route(VECTORS, k=4, include_self=False)
    assert routes[0].sources == (1, 2, 3, 4)
    assert all(r.target not in r.sources for r in routes)


def test_softmax_weights_follow_the_temperature() -> None:
    sharp = route(VECTORS, k=3, temperature=0.05, targets=[0])[0]
    flat = route(VECTORS, k=3, temperature=10.0, targets=[0])[0]
    sims = np.asarray(sharp.similarities)
    expected = np.exp(sims / 0.05) / np.exp(sims / 0.05).sum()
    assert np.allclose(sharp.weights, expected)
    assert math.isclose(sum(sharp.weights), 1.0) and math.isclose(sum(flat.weights), 1.0)
    assert sharp.weights[0] > flat.weights[0] > flat.weights[2] > sharp.weights[2]


def test_normalized_weights_are_similarities_over_their_sum() -> None:
    r = route(VECTORS, k=3, weighting="normalized", targets=[1])[0]
    sims = np.asarray(r.similarities)
    assert np.allclose(r.weights, sims / sims.sum())


def test_normalized_weights_give_negative_similarities_zero() -> None:
    r = route(VECTORS, k=5, weighting="normalized", targets=[0])[0]
    assert r.sources[-1] == 4 and r.similarities[-1] < 0
    assert r.weights[-1] == 0.0 and math.isclose(sum(r.weights), 1.0)


def test_equal_similarities_keep_row_order() -> None:
    same = _unit([[1.0, 0.0]] * 4)
    assert route(same, k=3, targets=[2])[0].sources == (0, 1, 2)
    assert route(same, k=3, targets=[0], include_self=False)[0].sources == (1, 2, 3)


def test_routes_real_persona_embeddings_to_the_related_persona() -> None:
    from trainers.embedding import embed

    texts = [
        "I love hiking in the mountains with my dog.",
        "I am a chef and I cook Italian food.",
        "Mountain trails and long walks with my dog are my weekends.",
        "I run a small restaurant and love cooking pasta.",
    ]
    routes = route(embed(texts), k=1, include_self=False)
    assert [r.sources[0] for r in routes] == [2, 3, 0, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, r"invalid k=0: expected 1 <= k <= 5"),
        ({"k": 5, "include_self": False}, r"invalid k=5: expected 1 <= k <= 4"),
        ({"weighting": "argmax"}, "invalid weighting='argmax'"),
        ({"temperature": 0.0}, "invalid temperature=0.0"),
        ({"targets": [5]}, r"invalid target 5: expected a row in \[0, 5\)"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        route(VECTORS, **kwargs)


def test_refuses_embeddings_that_are_not_unit_rows() -> None:
    with pytest.raises(ValueError, match=r"row 1 has norm 2\.0000"):
        route(np.array([[1.0, 0.0], [2.0, 0.0]]), k=1)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        route(np.ones(3), k=1)


def test_normalized_needs_a_positive_similarity() -> None:
    opposite = _unit([[1.0, 0.0], [-1.0, 0.0]])
    with pytest.raises(ValueError, match="needs a positive similarity"):
        route(opposite, k=1, weighting="normalized", include_self=False)
