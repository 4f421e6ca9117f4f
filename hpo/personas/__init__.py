"""Per-persona adapters: their study and objective, and the MoE merge of them
(``hpo personas``, ``hpo moe``).

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from hpo.personas.moe import evaluate_moe, merge_moe, run_moe
    from hpo.personas.training import train_persona_adapters

_MODULES: dict[str, tuple[str, ...]] = {
    "hpo.personas.moe": ("evaluate_moe", "merge_moe", "run_moe"),
    "hpo.personas.training": ("train_persona_adapters",),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "evaluate_moe",
    "merge_moe",
    "run_moe",
    "train_persona_adapters",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
