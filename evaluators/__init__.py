"""Evaluators: generate replies with or without an adapter, score them, and compare methods.

:mod:`evaluators.scoring` generates one method's replies as an :class:`EvalConfig` says and
scores them (similarity, diversity), a resumable run; :mod:`evaluators.stats` holds the
statistics that compare methods; :mod:`evaluators.trials` evaluates a study's trials and
promotes the best; :mod:`evaluators.baselines` are what the trials are compared with;
:mod:`evaluators.moe` is the MoE merge and :mod:`evaluators.report` the comparison report.
``evaluators`` never creates Optuna trials.
"""

from __future__ import annotations

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
