"""Evaluators: generate replies with or without an adapter, score them, and compare methods.

:mod:`evaluators.generation` decodes as an :class:`EvalConfig` says; :mod:`evaluators.evaluation`
scores one method's replies (:mod:`evaluators.similarity`, :mod:`evaluators.diversity`) and
compares methods (:mod:`evaluators.stats`); :mod:`evaluators.promotion` promotes a study's best
trial and evaluates it against the baselines. ``evaluators`` never creates Optuna trials.
"""

from __future__ import annotations

from evaluators.comparison import compare, compare_methods
from evaluators.config import EvalConfig
from evaluators.diversity import Diversity, diversity
from evaluators.evaluation import EvalItem, MethodResult, RunKey, eval_items, evaluate_method
from evaluators.generation import adapter_applied, clean_reply, generate_replies
from evaluators.merge import MERGE_METHODS, MergeMethod, get_merge_method
from evaluators.promotion import PromotedTrial, evaluate_promoted, promote_adapter
from evaluators.router import Route, route
from evaluators.similarity import (
    macro_mean,
    normalized,
    pairwise_similarity,
    reference_ceiling,
    similarity_floor,
)
from evaluators.stats import Difference, Estimate, holm, mean_ci, paired_difference

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
