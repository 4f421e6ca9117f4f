"""Evaluators: generate replies with or without an adapter, score them, and compare methods.

:mod:`evaluators.scoring` generates one method's replies as an :class:`EvalConfig` says and
scores them (similarity, diversity), a resumable run; :mod:`evaluators.stats` holds the
statistics that compare methods; :mod:`evaluators.trials` evaluates a study's trials and
promotes the best; :mod:`evaluators.baselines` are what the trials are compared with;
:mod:`evaluators.moe` is the MoE merge and :mod:`evaluators.report` the comparison report.
``evaluators`` never creates Optuna trials.

Its names are loaded on first use, like those of its subpackages, so that importing
:mod:`evaluators.config` (a study config's ``[evaluation]`` section) imports no other module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from evaluators.config import EvalConfig
    from evaluators.moe.merge import MERGE_METHODS, MergeMethod, get_merge_method
    from evaluators.moe.router import Route, route
    from evaluators.scoring.diversity import Diversity, diversity
    from evaluators.scoring.generation import adapter_applied, clean_reply, generate_replies
    from evaluators.scoring.method_run import (
        EvalItem,
        MethodResult,
        RunKey,
        eval_items,
        evaluate_method,
    )
    from evaluators.scoring.similarity import (
        macro_mean,
        normalized,
        pairwise_similarity,
        reference_ceiling,
        similarity_floor,
    )
    from evaluators.stats.comparison import compare, compare_methods
    from evaluators.stats.estimates import Difference, Estimate, holm, mean_ci, paired_difference
    from evaluators.trials.promotion import PromotedTrial, evaluate_promoted, promote_adapter

_MODULES: dict[str, tuple[str, ...]] = {
    "evaluators.config": ("EvalConfig",),
    "evaluators.moe.merge": (
        "MERGE_METHODS",
        "MergeMethod",
        "get_merge_method",
    ),
    "evaluators.moe.router": (
        "Route",
        "route",
    ),
    "evaluators.scoring.diversity": (
        "Diversity",
        "diversity",
    ),
    "evaluators.scoring.generation": (
        "adapter_applied",
        "clean_reply",
        "generate_replies",
    ),
    "evaluators.scoring.method_run": (
        "EvalItem",
        "MethodResult",
        "RunKey",
        "eval_items",
        "evaluate_method",
    ),
    "evaluators.scoring.similarity": (
        "macro_mean",
        "normalized",
        "pairwise_similarity",
        "reference_ceiling",
        "similarity_floor",
    ),
    "evaluators.stats.comparison": (
        "compare",
        "compare_methods",
    ),
    "evaluators.stats.estimates": (
        "Difference",
        "Estimate",
        "holm",
        "mean_ci",
        "paired_difference",
    ),
    "evaluators.trials.promotion": (
        "PromotedTrial",
        "evaluate_promoted",
        "promote_adapter",
    ),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "MERGE_METHODS",
    "Difference",
    "Diversity",
    "Estimate",
    "EvalConfig",
    "EvalItem",
    "MergeMethod",
    "MethodResult",
    "PromotedTrial",
    "Route",
    "RunKey",
    "adapter_applied",
    "clean_reply",
    "compare",
    "compare_methods",
    "diversity",
    "eval_items",
    "evaluate_method",
    "evaluate_promoted",
    "generate_replies",
    "get_merge_method",
    "holm",
    "macro_mean",
    "mean_ci",
    "normalized",
    "paired_difference",
    "pairwise_similarity",
    "promote_adapter",
    "reference_ceiling",
    "route",
    "similarity_floor",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
