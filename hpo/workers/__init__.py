"""The workers that train a study's trials: the worker loop, the Optuna objective, the
budget tickets and the step budget, the clean stop, and the launcher of worker processes.

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from hpo.workers.launch import WorkerProcess, start_workers, wait_for_workers
    from hpo.workers.objective import Objective, TrialContext
    from hpo.workers.step_budget import optimizer_steps
    from hpo.workers.tickets import fail_stale_trials
    from hpo.workers.worker import OutputRootError, WorkerSummary, run_worker

_MODULES: dict[str, tuple[str, ...]] = {
    "hpo.workers.launch": ("WorkerProcess", "start_workers", "wait_for_workers"),
    "hpo.workers.objective": ("Objective", "TrialContext"),
    "hpo.workers.step_budget": ("optimizer_steps",),
    "hpo.workers.tickets": ("fail_stale_trials",),
    "hpo.workers.worker": ("OutputRootError", "WorkerSummary", "run_worker"),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "Objective",
    "OutputRootError",
    "TrialContext",
    "WorkerProcess",
    "WorkerSummary",
    "fail_stale_trials",
    "optimizer_steps",
    "run_worker",
    "start_workers",
    "wait_for_workers",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
