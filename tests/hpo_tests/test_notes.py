"""The study's note in optuna-dashboard, on a real Optuna storage."""

from __future__ import annotations

import optuna

from hpo.evaluation.notes import save_study_note, study_note


def test_the_study_note_is_saved_and_replaced(sqlite_url: str) -> None:
    study = optuna.create_study(study_name="s", storage=sqlite_url)
    assert study_note(study) == ""
    long = "# Study s\n\n**Decision:** No method beats the base model (50.82%).\n" + "x" * 5000
    save_study_note(study, long)  # longer than one system attribute: stored in chunks
    again = optuna.load_study(study_name="s", storage=sqlite_url)
    assert study_note(again) == long
    save_study_note(again, "short")
    assert study_note(optuna.load_study(study_name="s", storage=sqlite_url)) == "short"
