"""The MoE router: for each target persona, the k most similar personas and their weights.

Similarity is the cosine of persona-text embeddings (``trainers.embedding.embed`` returns unit
rows, so it is a dot product). Two weightings:

- ``"softmax"``: ``softmax(similarity / temperature)`` over the k chosen personas; a low
  temperature leans on the nearest persona, a high one spreads the weight evenly.
- ``"normalized"``: the similarities themselves, divided by their sum (a persona less similar
  than orthogonal, with a negative cosine, gets weight 0).

``include_self=False`` is the cold start: the target's own adapter is not a candidate, as for a
persona that was never trained on. Pure numpy; the caller embeds the texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WEIGHTINGS = ("softmax", "normalized")
"""The weighting schemes :func:`route` accepts."""

DEFAULT_K = 5
"""Adapters merged per target persona; the issue's default."""

DEFAULT_TEMPERATURE = 0.1
"""Softmax temperature: cosines of related persona texts differ by a few hundredths to a few
tenths, so at 0.1 the nearest persona counts more without taking all the weight."""

_UNIT_TOLERANCE = 1e-3
"""How far a row's norm may be from 1 (float32 embeddings are normalized to about 1e-7)."""


@dataclass(frozen=True)
class Route:
    """The sources of one target persona's merge, most similar first."""

    target: int
    """Row of the target persona in the embedding matrix."""
    sources: tuple[int, ...]
    """Rows of the k chosen personas, by decreasing similarity (ties: lower row first)."""
    weights: tuple[float, ...]
    """Merge weight of each source; non-negative and summing to 1."""
    similarities: tuple[float, ...]
    """Cosine similarity of each source to the target."""


def route(
    persona_embeddings: Any,
    *,
    k: int = DEFAULT_K,
    weighting: str = "softmax",
    temperature: float = DEFAULT_TEMPERATURE,
    include_self: bool = True,
    targets: Sequence[int] | None = None,
) -> list[Route]:
    """Pick the k most similar personas of each target persona and weight them.

    Args:
        persona_embeddings: (n, d) array of unit-normalized persona-text embeddings, one row per
            persona; the rows are both the targets and the candidates.
        k: Sources per target, 1 <= k <= n (k <= n - 1 without the target itself).
        weighting: ``"softmax"`` or ``"normalized"`` (see the module docstring).
        temperature: Softmax temperature, > 0; ignored by ``"normalized"``.
        include_self: Whether a target's own adapter is a candidate; False is the cold start.
        targets: Rows to route (default: every row), in the order of the result.

    Returns:
        One :class:`Route` per target.

    Raises:
        ValueError: If an argument is out of range or a row is not unit-normalized; the message
            names the value.
    """
    import numpy as np

    vectors = np.asarray(persona_embeddings, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(
            f"persona_embeddings has shape {vectors.shape}: expected (n, d) with n >= 1"
        )
    norms = np.linalg.norm(vectors, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > _UNIT_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"persona embedding row {int(bad[0])} has norm {norms[bad[0]]:.4f}: expected unit "
            "rows (embed with normalize_embeddings=True, as trainers.embedding.embed does)"
        )
    n = len(vectors)
    candidates = n if include_self else n - 1
    if not 1 <= k <= candidates:
        raise ValueError(
            f"invalid k={k}: expected 1 <= k <= {candidates} "
            f"({n} personas, include_self={include_self})"
        )
    if weighting not in WEIGHTINGS:
        raise ValueError(f"invalid weighting={weighting!r}: expected one of {WEIGHTINGS}")
    if weighting == "softmax" and not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"invalid temperature={temperature!r}: expected a number > 0")
    rows = list(range(n)) if targets is None else [int(t) for t in targets]
    for row in rows:
        if not 0 <= row < n:
            raise ValueError(f"invalid target {row}: expected a row in [0, {n})")

    similarity = vectors[rows] @ vectors.T
    routes = []
    for i, target in enumerate(rows):
        scores = similarity[i].copy()
        if not include_self:
            scores[target] = -np.inf
        # Stable sort on the negated score: equal scores keep row order, so routes are
        # reproducible across runs and platforms.
        chosen = np.argsort(-scores, kind="stable")[:k]
        routes.append(
            Route(
                target=target,
                sources=tuple(int(c) for c in chosen),
                weights=tuple(float(w) for w in _weights(scores[chosen], weighting, temperature)),
                similarities=tuple(float(s) for s in scores[chosen]),
            )
        )
    return routes


def _weights(similarities: Any, weighting: str, temperature: float) -> Any:
    """Weights of the chosen sources from their similarities; they sum to 1."""
    import numpy as np

    if weighting == "softmax":
        logits = similarities / temperature
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()
    clipped = np.clip(similarities, 0.0, None)
    total = clipped.sum()
    if total <= 0:
        raise ValueError(
            f"weighting='normalized' needs a positive similarity among the chosen sources, "
            f"got {similarities.tolist()}: use weighting='softmax'"
        )
    return clipped / total
