"""A study's trials evaluated in one shared scope, the best one promoted, and the typed
records of the results file.

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from evaluators.trials.promotion import (
        evaluate_adapter,
        evaluate_promoted,
        promote_adapter,
        promote_best,
    )
    from evaluators.trials.records import (
        AdapterReport,
        EvaluatedTrial,
        MethodsReport,
        PromotionReport,
    )
    from evaluators.trials.scope import (
        EvalScope,
        PromotedTrial,
        evaluate_baselines,
        evaluate_trial,
        evaluated_trials,
    )

_MODULES: dict[str, tuple[str, ...]] = {
    "evaluators.trials.promotion": (
        "evaluate_adapter",
        "evaluate_promoted",
        "promote_adapter",
        "promote_best",
    ),
    "evaluators.trials.records": (
        "AdapterReport",
        "EvaluatedTrial",
        "MethodsReport",
        "PromotionReport",
    ),
    "evaluators.trials.scope": (
        "EvalScope",
        "PromotedTrial",
        "evaluate_baselines",
        "evaluate_trial",
        "evaluated_trials",
    ),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "AdapterReport",
    "EvalScope",
    "EvaluatedTrial",
    "MethodsReport",
    "PromotedTrial",
    "PromotionReport",
    "evaluate_adapter",
    "evaluate_baselines",
    "evaluate_promoted",
    "evaluate_trial",
    "evaluated_trials",
    "promote_adapter",
    "promote_best",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
