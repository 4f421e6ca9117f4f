"""Study records: JSON documents by study and key, replaced in place, listed by prefix."""

from __future__ import annotations

import sqlalchemy as sa

import storage


def test_records_are_saved_replaced_listed_and_deleted(engine: sa.Engine) -> None:
    config = {"study": {"name": "s", "n_trials": 4}, "train": {"learning_rate": 1e-4}}
    with storage.session_scope(engine) as session:
        sha = storage.save_study_record(session, "s", "config", config)
        storage.save_study_record(session, "s", "evaluation:trial:1", {"similarity": 0.5})
        storage.save_study_record(session, "s", "evaluation:trial:1", {"similarity": 0.6})
        storage.save_study_record(session, "s", "evaluation_trial_2", {"other": True})
        storage.save_study_record(session, "t", "config", {"study": {"n_trials": 9}})
    assert sha == storage.record_sha256(config)
    with storage.session_scope(engine) as session:
        assert storage.study_record(session, "s", "config") == (config, sha)
        assert storage.study_record(session, "s", "missing") is None
        assert storage.study_records(session, "s", prefix="evaluation:trial:") == {
            "evaluation:trial:1": {"similarity": 0.6}
        }
        assert set(storage.study_records_of_key(session, "config")) == {"s", "t"}
        storage.delete_study_records(session, "s")
    with storage.session_scope(engine) as session:
        assert storage.study_records(session, "s") == {}
        assert storage.study_record(session, "t", "config") is not None
