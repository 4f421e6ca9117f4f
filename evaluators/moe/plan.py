"""The MoE merge's plan (:mod:`evaluators.moe.run`): the per-persona adapters, the routing and
merging settings, each target's routes, and the merged adapters written from them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import storage
from evaluators.moe.card import merged_card
from evaluators.moe.merge import MERGE_METHODS, get_merge_method
from evaluators.moe.router import DEFAULT_K, DEFAULT_TEMPERATURE, WEIGHTINGS, route
from trainers.config import ModelConfig
from trainers.embedding import DEFAULT_EMBEDDING_MODEL

PERSONAS_GROUP = "personas"
"""Folder of the per-persona adapters under ``models/<study>/``."""


@dataclass(frozen=True)
class PersonaAdapter:
    """One persona's own adapter, as recorded when it was trained."""

    persona_key: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class MoeSettings:
    """How targets are routed and merged."""

    k: int = DEFAULT_K
    """Adapters merged per target persona."""
    weighting: str = "softmax"
    """``softmax`` (with ``temperature``) or ``normalized`` similarities."""
    temperature: float = DEFAULT_TEMPERATURE
    """Softmax temperature of the router."""
    merge_method: str = "cat"
    """A merge method of :data:`evaluators.moe.merge.MERGE_METHODS`; ``cat`` is exact."""

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"invalid k={self.k!r}: expected an integer >= 1")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"invalid weighting={self.weighting!r}: expected one of {WEIGHTINGS}")
        if not self.temperature > 0:
            raise ValueError(f"invalid temperature={self.temperature!r}: expected a number > 0")
        if self.merge_method != "cat":
            known = sorted(MERGE_METHODS)
            if self.merge_method not in known:
                raise ValueError(
                    f"invalid merge_method={self.merge_method!r}: expected one of {known}"
                )
            raise ValueError(
                f"merge_method={self.merge_method!r} needs the base model in memory; the MoE "
                "pipeline uses 'cat', which is exact (see BENCHMARKS.md)"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def adapter_name(persona_key: str) -> str:
    """A persona's folder name: its key when that is a safe path component, else a digest."""
    try:
        return storage.validate_name(persona_key, what="persona key")
    except storage.InvalidNameError:
        return "persona-" + hashlib.sha256(persona_key.encode()).hexdigest()[:16]


def persona_vectors(
    engine: Any, dataset_id: int, personas: Sequence[Any], embedding_model: str | None = None
) -> Any:
    """Unit embeddings of the persona texts, one row per persona: stored ones read back
    (``hpo data cluster`` stored them), the others embedded now."""
    import numpy as np

    from trainers.embedding import embed

    model = embedding_model or DEFAULT_EMBEDDING_MODEL
    with storage.session_scope(engine) as session:
        cached = storage.load_persona_embeddings(session, dataset_id, model)
    missing = [p for p in personas if p.key not in cached]
    if missing:
        cached.update(
            zip([p.key for p in missing], embed([p.text for p in missing], model), strict=True)
        )
    vectors = np.stack([np.asarray(cached[p.key], dtype=np.float64) for p in personas])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def plan_routes(
    keys: Sequence[str], vectors: Any, settings: MoeSettings, *, include_self: bool
) -> list[dict[str, Any]]:
    """Each target persona's sources and weights (every persona is a target and a candidate).

    Returns:
        One entry per persona: ``target``, ``sources``, ``weights``, ``similarities``.
    """
    routes = route(
        vectors,
        k=settings.k,
        weighting=settings.weighting,
        temperature=settings.temperature,
        include_self=include_self,
    )
    return [
        {
            "target": keys[r.target],
            "sources": [keys[s] for s in r.sources],
            "weights": list(r.weights),
            "similarities": list(r.similarities),
        }
        for r in routes
    ]


def merge_variant(
    layout: storage.OutputLayout,
    study_name: str,
    variant: str,
    routes: Sequence[Mapping[str, Any]],
    adapters: Mapping[str, PersonaAdapter],
    settings: MoeSettings,
    model: ModelConfig | None = None,
) -> dict[str, PersonaAdapter]:
    """Merge each route's source adapters into ``models/<study>/<variant>/<target>/``, each with
    its model card where the base ``model`` is given.

    Returns:
        Target persona -> its merged adapter (with the sha256 of the written folder).

    Raises:
        ValueError: If a source persona has no adapter.
    """
    method = get_merge_method(settings.merge_method)
    merged: dict[str, PersonaAdapter] = {}
    for entry in routes:
        lacking = [s for s in entry["sources"] if s not in adapters]
        if lacking:
            raise ValueError(
                f"{variant}: persona {entry['target']!r} routes to {lacking[0]!r}, which has "
                "no adapter; train the per-persona adapters first (hpo personas train)"
            )
        out = layout.study_adapter_dir(study_name, variant, adapter_name(entry["target"]))
        sources = entry["sources"]
        card = None
        if model is not None:
            folder = out.relative_to(layout.root).as_posix()
            made = merged_card(
                study_name, variant, entry, model, method=settings.merge_method, folder=folder
            )
            card = made.markdown()
        paths = [adapters[s].path for s in sources]
        method.merge(paths, entry["weights"], out, names=sources, card=card)
        sha, _ = storage.directory_sha256(out)
        merged[entry["target"]] = PersonaAdapter(entry["target"], out, sha)
    return merged
