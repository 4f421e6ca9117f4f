"""The model card of a merged MoE adapter (:mod:`trainers.model_card`): which personas' adapters
it merges with which weights, for which target persona, and how to load it. Written into the
merged folder before it is renamed into place, so it is part of the folder's sha256."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainers.config import ModelConfig
from trainers.model_card import ModelCard

VARIANT_TEXT = {
    "moe_self": "with the target persona's own adapter among the candidates",
    "moe_cold_start": "without the target persona's own adapter (cold start: a new persona)",
}
"""What each variant of the merge is, for people."""


def merged_card(
    study_name: str,
    variant: str,
    route: Mapping[str, Any],
    model: ModelConfig,
    *,
    method: str,
    folder: str,
) -> ModelCard:
    """The card of the adapter merged for ``route["target"]`` (its ``sources`` and ``weights``)."""
    target = str(route["target"])
    sources = ", ".join(
        f"{s} ({w:.3f})" for s, w in zip(route["sources"], route["weights"], strict=True)
    )
    return ModelCard(
        title=f"MoE-merged LoRA adapter for {target} (study {study_name}, {variant})",
        summary=(
            f"A LoRA adapter for persona `{target}`, merged from the per-persona adapters of "
            f"the {len(route['sources'])} personas most similar to it (by persona-text "
            f"embedding), weighted by that similarity: the sparse MoE merge of study "
            f"`{study_name}`, {VARIANT_TEXT.get(variant, variant)}."
        ),
        model=model,
        folder=folder,
        facts=(
            ("study", study_name),
            ("target persona", target),
            ("variant", f"{variant}: {VARIANT_TEXT.get(variant, variant)}"),
            ("sources (weight)", sources),
            (
                "merge method",
                method + (" (exact: rank = sum of the sources' ranks)" if method == "cat" else ""),
            ),
        ),
        tags=("moe-merge", "merged"),
        notes=(
            "`merge.json` in this folder lists the source adapters and weights; "
            "`results/<study>/moe/moe_sparse_results.json` holds the routes and the scores.",
        ),
    )
