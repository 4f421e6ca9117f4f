"""Embedding similarity (SemScore): cosine between sentence embeddings of reply and reference."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from trainers.embedding import embed


def pairwise_similarity(
    generated: Sequence[str],
    references: Sequence[str],
    model: str | None = None,
    *,
    batch_size: int = 64,
) -> Any:
    """Cosine similarity of each generated text with its reference (numpy array, in [-1, 1])."""
    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated texts but {len(references)} references")
    if not generated:
        import numpy as np

        return np.zeros(0, dtype="float32")
    vectors = embed([*generated, *references], model, batch_size=batch_size)
    n = len(generated)
    return (vectors[:n] * vectors[n:]).sum(axis=1)


def persona_means(keys: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """Mean value per persona key."""
    groups: dict[str, list[float]] = defaultdict(list)
    for key, value in zip(keys, values, strict=True):
        groups[key].append(float(value))
    return {key: sum(v) / len(v) for key, v in sorted(groups.items())}


def macro_mean(per_persona: dict[str, float]) -> float:
    """Mean over personas of their mean (each persona weighs the same)."""
    return sum(per_persona.values()) / len(per_persona) if per_persona else float("nan")
