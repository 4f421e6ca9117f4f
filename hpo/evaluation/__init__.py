"""The evaluator service and its by-hand form: which trials of a study are due, each piece of
work under its lease, ``hpo evaluate`` for one trial or adapter, and ``hpo report``.

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from hpo.evaluation.by_hand import evaluate_adapter_by_hand, evaluate_trial_by_hand
    from hpo.evaluation.service import evaluate_study, run_evaluator
    from hpo.evaluation.study_report import write_report
    from hpo.evaluation.study_work import open_evaluator

_MODULES: dict[str, tuple[str, ...]] = {
    "hpo.evaluation.by_hand": ("evaluate_adapter_by_hand", "evaluate_trial_by_hand"),
    "hpo.evaluation.service": ("evaluate_study", "run_evaluator"),
    "hpo.evaluation.study_report": ("write_report",),
    "hpo.evaluation.study_work": ("open_evaluator",),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "evaluate_adapter_by_hand",
    "evaluate_study",
    "evaluate_trial_by_hand",
    "open_evaluator",
    "run_evaluator",
    "write_report",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
