from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage import (
    StorageError,
    done_example_ids,
    evaluation_results,
    evaluation_run_status,
    fail_evaluation_run,
    finish_evaluation_run,
    list_evaluation_runs,
    load_personas,
    save_evaluation_results,
    session_scope,
    start_evaluation_run,
)


def _start(session, dataset_id: int, **kwargs) -> int:  # type: ignore[no-untyped-def]
    args = dict(
        study_name="s",
        method="base_model",
        dataset_id=dataset_id,
        clustering_id=None,
        embedding_model="m",
    )
    args.update(kwargs)
    return start_evaluation_run(session, **args)  # type: ignore[arg-type]


def test_resume_without_duplicates_and_persona_mean(engine: sa.Engine, dataset_id: int) -> None:
    with session_scope(engine) as session:
        personas = load_personas(session, dataset_id)
        run = _start(session, dataset_id)
        assert evaluation_run_status(session, run) == "running"
    p0, p1 = personas[0].examples, personas[1].examples
    # p0: 3 examples with similarity 1.0; p1: 1 example with 0.0.
    rows = [(e.id, f"gen {e.id}", 1.0) for e in p0[:3]] + [(p1[0].id, "gen", 0.0)]
    with session_scope(engine) as session:
        save_evaluation_results(session, run, rows[:2])
    # "killed and restarted": the same run comes back, done rows are skipped or ignored.
    with session_scope(engine) as session:
        assert _start(session, dataset_id) == run
        assert done_example_ids(session, run) == {p0[0].id, p0[1].id}
        save_evaluation_results(session, run, rows)  # overlaps the first batch
        mean = finish_evaluation_run(session, run)
    assert mean == pytest.approx(0.5)  # per-persona mean, not 3/4 over examples
    with session_scope(engine) as session:
        results = evaluation_results(session, run)
        assert len(results) == 4
        assert [r.persona_key for r in results] == ["p000"] * 3 + ["p001"]
        assert results[0].reference == p0[0].reply and results[0].generated == f"gen {p0[0].id}"
        assert evaluation_run_status(session, run) == "complete"
        (info,) = list_evaluation_runs(session, "s")
        assert (info.status, info.n_examples, info.trial_number, info.cluster_id) == (
            "complete",
            4,
            -1,
            -1,
        )
        assert info.mean_similarity == pytest.approx(0.5)


def test_runs_are_keyed(engine: sa.Engine, dataset_id: int) -> None:
    with session_scope(engine) as session:
        a = _start(session, dataset_id)
        b = _start(session, dataset_id, method="cluster_lora", trial_number=3, cluster_id=0)
        c = _start(session, dataset_id, method="cluster_lora", trial_number=3, cluster_id=1)
        assert len({a, b, c}) == 3
        assert [r.id for r in list_evaluation_runs(session, "s")] == [a, b, c]
    with (
        pytest.raises(StorageError, match="exists with dataset/clustering/embedding model"),
        session_scope(engine) as session,
    ):
        _start(session, dataset_id, embedding_model="other")
    with pytest.raises(StorageError, match="no results"), session_scope(engine) as session:
        finish_evaluation_run(session, a)
    with (
        pytest.raises(StorageError, match="no evaluation run with id 999"),
        session_scope(engine) as session,
    ):
        evaluation_run_status(session, 999)


def test_a_failed_run_keeps_its_reason_and_is_resumed_when_opened_again(
    engine: sa.Engine, dataset_id: int
) -> None:
    with session_scope(engine) as session:
        example = load_personas(session, dataset_id)[0].examples[0]
        run = _start(session, dataset_id)
        save_evaluation_results(session, run, [(example.id, "gen", 0.5)])
    with session_scope(engine) as session:
        fail_evaluation_run(session, run, "AdapterError: x: does not load\n  onto the base model")
    with session_scope(engine) as session:
        assert evaluation_run_status(session, run) == "failed"
        (info,) = list_evaluation_runs(session, "s")
        assert info.failure == "AdapterError: x: does not load onto the base model"  # one line
    with session_scope(engine) as session:  # opened again: resumed from what it stored
        assert _start(session, dataset_id) == run
        assert evaluation_run_status(session, run) == "running"
        assert done_example_ids(session, run) == {example.id}
        assert list_evaluation_runs(session, "s")[0].failure is None
        finish_evaluation_run(session, run)
    with session_scope(engine) as session:  # a finished run is never marked failed after
        fail_evaluation_run(session, run, "late")
        assert evaluation_run_status(session, run) == "complete"
