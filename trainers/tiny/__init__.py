"""The demo's stand-ins: a synthetic persona dataset and a tiny base model, both offline.

Nothing in the training chain depends on them: :func:`trainers.base_model.load_base_model`
imports this package only for ``base_model = "tiny"``, and the demo writes its dataset here.
"""

from __future__ import annotations

from trainers.tiny.generator import (
    LARGEST_ARCHETYPE,
    Plant,
    archetype_sizes,
    generate_persona_chats,
    generate_personas,
    persona_archetypes,
    planted_personas,
    trait_set,
    write_demo_dataset,
)
from trainers.tiny.model import (
    PRETRAIN_SEED_OFFSET,
    TINY_RECIPE_VERSION,
    TinyModelSpec,
    ensure_tiny_model,
    tiny_model_build,
    tiny_model_dir,
)

__all__ = [
    "LARGEST_ARCHETYPE",
    "PRETRAIN_SEED_OFFSET",
    "TINY_RECIPE_VERSION",
    "Plant",
    "TinyModelSpec",
    "archetype_sizes",
    "ensure_tiny_model",
    "generate_persona_chats",
    "generate_personas",
    "persona_archetypes",
    "planted_personas",
    "tiny_model_build",
    "tiny_model_dir",
    "trait_set",
    "write_demo_dataset",
]
