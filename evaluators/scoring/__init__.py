"""One method on the test examples: replies generated, scored by embedding similarity and
diversity, and stored as they come (a resumable run).

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from evaluators.scoring.diversity import Diversity, diversity
    from evaluators.scoring.generation import adapter_applied, clean_reply, generate_replies
    from evaluators.scoring.method_run import (
        EvalItem,
        MethodResult,
        RunKey,
        eval_items,
        evaluate_method,
        score_replies,
    )
    from evaluators.scoring.similarity import (
        macro_mean,
        normalized,
        pairwise_similarity,
        reference_ceiling,
        similarity_floor,
    )

_MODULES: dict[str, tuple[str, ...]] = {
    "evaluators.scoring.diversity": ("Diversity", "diversity"),
    "evaluators.scoring.generation": ("adapter_applied", "clean_reply", "generate_replies"),
    "evaluators.scoring.method_run": (
        "EvalItem",
        "MethodResult",
        "RunKey",
        "eval_items",
        "evaluate_method",
        "score_replies",
    ),
    "evaluators.scoring.similarity": (
        "macro_mean",
        "normalized",
        "pairwise_similarity",
        "reference_ceiling",
        "similarity_floor",
    ),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "Diversity",
    "EvalItem",
    "MethodResult",
    "RunKey",
    "adapter_applied",
    "clean_reply",
    "diversity",
    "eval_items",
    "evaluate_method",
    "generate_replies",
    "macro_mean",
    "normalized",
    "pairwise_similarity",
    "reference_ceiling",
    "score_replies",
    "similarity_floor",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
