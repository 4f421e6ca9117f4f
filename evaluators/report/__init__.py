"""The comparison report of one study: its rows, the plan's decision rule, the plotly
figure, the markdown summary, and the build that writes them.

Its names are loaded on first use, like those of :mod:`hpo`, so that importing one module
of the package imports no other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers.lazy import lazy_names

if TYPE_CHECKING:
    from evaluators.report.build import build_report, write_report_files
    from evaluators.report.decision import Decision, decide
    from evaluators.report.figure import comparison_figure
    from evaluators.report.summary import summary_markdown

_MODULES: dict[str, tuple[str, ...]] = {
    "evaluators.report.build": ("build_report", "write_report_files"),
    "evaluators.report.decision": ("Decision", "decide"),
    "evaluators.report.figure": ("comparison_figure",),
    "evaluators.report.summary": ("summary_markdown",),
}
"""The module that defines each public name: the imports above."""

_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "Decision",
    "build_report",
    "comparison_figure",
    "decide",
    "summary_markdown",
    "write_report_files",
]

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF, __all__)
