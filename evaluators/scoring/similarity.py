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


def _unit_vectors(texts: Sequence[str], model: str | None) -> Any:
    return embed(list(texts), model)


def _macro_over_keys(keys: Sequence[str], matrix: Any, *, same: bool) -> float:
    """Mean over personas of the mean matrix entry between a row of the persona and the
    columns of the same persona (``same=True``, diagonal excluded) or of other personas."""
    import numpy as np

    labels = np.asarray(keys)
    per_persona: dict[str, list[float]] = defaultdict(list)
    for i, key in enumerate(keys):
        mask = labels == key if same else labels != key
        if same:
            mask[i] = False
        if mask.any():
            per_persona[key].append(float(matrix[i, mask].mean()))
    return macro_mean({k: sum(v) / len(v) for k, v in per_persona.items()})


def similarity_floor(
    generated: Sequence[str],
    references: Sequence[str],
    keys: Sequence[str],
    model: str | None = None,
) -> float:
    """What unrelated text scores: each reply against the references of *other* personas,
    averaged per persona, then over personas."""
    g, r = _unit_vectors(generated, model), _unit_vectors(references, model)
    return _macro_over_keys(keys, g @ r.T, same=False)


def reference_ceiling(
    references: Sequence[str], keys: Sequence[str], model: str | None = None
) -> float:
    """What a perfect imitation of the persona could score: two different references of the
    same persona against each other, averaged per persona, then over personas."""
    r = _unit_vectors(references, model)
    return _macro_over_keys(keys, r @ r.T, same=True)


def normalized(score: float, floor: float) -> float:
    """Floor-normalized score ``(s - floor) / (1 - floor)``, as BERTScore's baseline rescaling."""
    return (score - floor) / (1 - floor)
