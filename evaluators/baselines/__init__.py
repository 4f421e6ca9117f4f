"""The baselines every trial is compared with, on the identical test examples: text
baselines, the base model and the trained unified and cluster-0 adapters, each cached.

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from evaluators.baselines.runs import (
        BASE_MODEL,
        CEILING,
        CLUSTER0,
        COPY_PERSONA,
        SWAPPED,
        UNIFIED,
        items_hash,
    )
    from evaluators.baselines.suite import baseline_report, evaluate_baselines

_MODULES: dict[str, tuple[str, ...]] = {
    "evaluators.baselines.runs": (
        "BASE_MODEL",
        "CEILING",
        "CLUSTER0",
        "COPY_PERSONA",
        "SWAPPED",
        "UNIFIED",
        "items_hash",
    ),
    "evaluators.baselines.suite": ("baseline_report", "evaluate_baselines"),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "BASE_MODEL",
    "CEILING",
    "CLUSTER0",
    "COPY_PERSONA",
    "SWAPPED",
    "UNIFIED",
    "baseline_report",
    "evaluate_baselines",
    "items_hash",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
