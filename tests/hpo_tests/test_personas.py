"""Per-persona adapters as an Optuna study of their own, then MoE and the report, end to end
with the real tiny model, real peft adapters and real storage (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

import storage
from evaluators.config import EvalConfig
from evaluators.moe.run import PERSONA_ADAPTERS, MoeSettings
from evaluators.report.decision import MOE_COLD, MOE_SELF
from hpo.evaluation.notes import study_note
from hpo.evaluation.study_report import write_report
from hpo.personas.moe import run_moe
from hpo.personas.training import (
    KIND,
    KIND_ATTR,
    PERSONA_ATTR,
    persona_adapters,
    personas_study_name,
    train_persona_adapters,
)
from hpo.study.config import StudyConfig, StudySection
from hpo.study.creation import create_study
from tests.conftest import import_and_cluster

SHORT = EvalConfig(batch_size=16, max_new_tokens=4)
SMALL = {"epochs": 1, "max_train_per_persona": 2, "evals_per_epoch": 1}


@pytest.mark.slow
def test_personas_study_then_moe_then_report(
    sqlite_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import_and_cluster(sqlite_url, tmp_path, "demo", k=5)
    config = StudyConfig(study=StudySection(name="c0", k=5, cluster_id=4, n_trials=2))
    create_study(config, sqlite_url)
    root = tmp_path / "out"

    summary = train_persona_adapters(
        sqlite_url, "c0", output_root=root, overrides=SMALL, progress=False
    )
    n = summary.n_personas
    assert n >= 3
    assert (summary.enqueued, len(summary.trained), summary.failed) == (n, n, [])
    assert "the study's [train] config" in summary.source  # no trial has run

    study = optuna.load_study(study_name=personas_study_name("c0"), storage=sqlite_url)
    assert study.user_attrs[KIND_ATTR] == KIND
    note = study_note(study)  # the dashboard says what this study is
    assert "queue of per-persona adapters" in note and "no best trial" in note
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.user_attrs[PERSONA_ATTR] for t in trials) == sorted(summary.trained)
    adapters = persona_adapters(sqlite_url, "c0", storage.OutputLayout(root.resolve()))
    assert set(adapters) == set(summary.trained)
    for key, adapter in adapters.items():
        assert adapter.path == root / "models" / "c0" / "personas" / key
        assert storage.directory_sha256(adapter.path)[0] == adapter.sha256

    again = train_persona_adapters(
        sqlite_url, "c0", output_root=root, overrides=SMALL, progress=False
    )
    assert (again.already_done, again.enqueued, again.trained) == (n, 0, [])
    changed = train_persona_adapters(
        sqlite_url,
        "c0",
        output_root=root,
        overrides={**SMALL, "max_train_per_persona": 3},
        progress=True,
    )
    assert (changed.already_done, changed.enqueued, len(changed.trained)) == (0, n, n)
    shown = "".join(capfd.readouterr())
    assert f"{n}/{n}" in shown  # the bar, and none of Optuna's line per trial under it
    assert "finished with value" not in shown and "'loss'" not in shown

    _, path = run_moe(
        sqlite_url, "c0", output_root=root, settings=MoeSettings(k=2), eval_config=SHORT
    )
    assert path == root / "results" / "c0" / "moe" / "moe_sparse_results.json"
    shown = "".join(capfd.readouterr())
    assert f"evaluating {MOE_SELF}:" in shown  # one bar over the personas,
    assert f"evaluating {MOE_SELF}." not in shown  # not one more bar per persona
    saved = json.loads(path.read_text())
    assert set(saved["evaluation"]) == {MOE_SELF, MOE_COLD, PERSONA_ADAPTERS}
    for row in saved["evaluation"].values():
        assert row["n_examples"] == 4 * n  # 4 test examples per persona
        assert len(row["per_persona"]) == n

    report, files = write_report(sqlite_url, "c0", output_root=root, eval_config=SHORT, png=False)
    assert list(report["rows"]) == [MOE_SELF, MOE_COLD, PERSONA_ADAPTERS]
    assert "unified adapter" in report["not_evaluated"]
    assert report["decision"]["branch"] == "incomplete"
    assert files["summary"].read_text().count("not evaluated") >= 5
