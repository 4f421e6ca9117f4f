"""The MoE sparse merge: the router, the merging plan, the merge methods
(:mod:`evaluators.moe.merge`) and the run that routes, merges and evaluates every persona.

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from evaluators.moe.merge import MERGE_METHODS, MergeMethod, get_merge_method
    from evaluators.moe.plan import MoeSettings, PersonaAdapter
    from evaluators.moe.router import Route, route
    from evaluators.moe.run import MoeScope, evaluate_all, merge_all

_MODULES: dict[str, tuple[str, ...]] = {
    "evaluators.moe.merge": ("MERGE_METHODS", "MergeMethod", "get_merge_method"),
    "evaluators.moe.plan": ("MoeSettings", "PersonaAdapter"),
    "evaluators.moe.router": ("Route", "route"),
    "evaluators.moe.run": ("MoeScope", "evaluate_all", "merge_all"),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "MERGE_METHODS",
    "MergeMethod",
    "MoeScope",
    "MoeSettings",
    "PersonaAdapter",
    "Route",
    "evaluate_all",
    "get_merge_method",
    "merge_all",
    "route",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
