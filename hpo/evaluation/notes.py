"""Notes in optuna-dashboard: the study's note holds the comparison report's summary.

The dashboard shows a study's note (markdown) at the top of the study page, where users look;
the study user attributes it also shows are clipped JSON. ``hpo report`` writes the note with
optuna-dashboard's public ``save_note``, which keeps it in the study's system attributes (in
chunks) and replaces the previous version. The summary carries the decision, the decision's
comparisons with their verdicts and the table of every method, evaluated trials included
(similarity, CI, floor, normalized, diversity).

A note per trial would need an ``optuna.Trial`` for a finished trial, which Optuna builds only
from its private trial id; the evaluated trials' rows are in the study's note instead.
"""

from __future__ import annotations

import optuna


def save_study_note(study: optuna.Study, markdown: str) -> None:
    """Replace the study's optuna-dashboard note with ``markdown``."""
    from optuna_dashboard import save_note

    save_note(study, markdown)


def study_note(study: optuna.Study) -> str:
    """The study's optuna-dashboard note ("" when none was saved)."""
    from optuna_dashboard import get_note

    return str(get_note(study))
