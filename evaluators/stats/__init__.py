"""The statistics: persona-level bootstrap intervals, paired differences and Holm's
correction, and the paired comparisons of evaluated methods built on them.

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from evaluators.stats.comparison import Comparison, compare, compare_methods, paired_comparisons
    from evaluators.stats.estimates import Difference, Estimate, holm, mean_ci, paired_difference

_MODULES: dict[str, tuple[str, ...]] = {
    "evaluators.stats.comparison": (
        "Comparison",
        "compare",
        "compare_methods",
        "paired_comparisons",
    ),
    "evaluators.stats.estimates": (
        "Difference",
        "Estimate",
        "holm",
        "mean_ci",
        "paired_difference",
    ),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "Comparison",
    "Difference",
    "Estimate",
    "compare",
    "compare_methods",
    "holm",
    "mean_ci",
    "paired_comparisons",
    "paired_difference",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
