"""What optuna-dashboard shows of an evaluation (study and trial notes, the report's figure),
on a real Optuna storage and artifact store."""

from __future__ import annotations

from pathlib import Path

import optuna

from hpo.evaluation.notes import (
    DASHBOARD_ARTIFACTS,
    dashboard_store,
    personas_study_note,
    save_study_note,
    save_trial_note,
    study_note,
    trial_note,
    trial_note_markdown,
    upload_figure,
)


def test_the_study_note_is_saved_and_replaced(sqlite_url: str) -> None:
    study = optuna.create_study(study_name="s", storage=sqlite_url)
    assert study_note(study) == ""
    long = "# Study s\n\n**Decision:** No method beats the base model (50.82%).\n" + "x" * 5000
    save_study_note(study, long)  # longer than one system attribute: stored in chunks
    again = optuna.load_study(study_name="s", storage=sqlite_url)
    assert study_note(again) == long
    save_study_note(again, "short")
    assert study_note(optuna.load_study(study_name="s", storage=sqlite_url)) == "short"


def test_a_finished_trial_gets_a_note(sqlite_url: str) -> None:
    """optuna-dashboard's save_note on a COMPLETE trial (its attributes can no longer change):
    stored in the study's system attributes, read back by trial number, replaced in place."""
    study = optuna.create_study(study_name="s", storage=sqlite_url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    figures = {
        "trial": 1,
        "similarity": 0.5123,
        "similarity_ci": [0.49, 0.53],
        "floor": 0.2,
        "normalized": 0.39,
        "distinct_1": 0.4,
        "distinct_2": 0.6,
        "top_reply_share": 0.1,
        "mean_reply_words": 9.5,
        "degenerate": False,
        "n_examples": 40,
        "eval_loss": 2.5,
        "eval_config_key": "abc",
    }
    markdown = trial_note_markdown(figures, promoted=True)
    save_trial_note(study, 1, markdown)
    again = optuna.load_study(study_name="s", storage=sqlite_url)
    assert trial_note(again, 1) == markdown and trial_note(again, 0) == ""
    assert "| embedding similarity | 51.23% |" in markdown
    assert "| 95% CI (persona bootstrap) | 49.00% to 53.00% |" in markdown
    assert "**Promoted**" in markdown
    save_trial_note(again, 1, "replaced")
    assert trial_note(optuna.load_study(study_name="s", storage=sqlite_url), 1) == "replaced"


def test_the_report_figure_is_a_study_artifact_uploaded_once(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The PNG goes to the store the dashboard serves; the same figure is not uploaded twice."""
    import storage

    engine = storage.open_storage(sqlite_url)
    study = optuna.create_study(study_name="s", storage=sqlite_url)
    png = tmp_path / "comprehensive_comparison.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    store = dashboard_store(tmp_path / "out")
    first = upload_figure(engine, study, png, "sha-1", store)
    assert upload_figure(engine, study, png, "sha-1", store) == first
    metas = optuna.artifacts.get_all_artifact_meta(study)
    assert [(m.artifact_id, m.filename, m.mimetype) for m in metas] == [
        (first, png.name, "image/png")
    ]
    assert (tmp_path / "out" / DASHBOARD_ARTIFACTS / first).read_bytes() == png.read_bytes()
    second = upload_figure(engine, study, png, "sha-2", store)
    assert second != first


def test_the_per_persona_study_note_says_what_it_is() -> None:
    note = personas_study_note("c4")
    assert "queue of per-persona adapters" in note and "no best trial" in note
