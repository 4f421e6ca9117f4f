"""The evaluator service on real parts: an Optuna study on SQL storage whose COMPLETE trials
carry real peft adapters of the tiny model (made here in place of training), real generation
and similarity, and the per-study output folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

import storage
from evaluators.config import EvalConfig
from evaluators.promotion import TRIAL_METHOD
from hpo.config import StudyConfig, StudySection
from hpo.evaluator import (
    PROMOTED_ATTR,
    TRIAL_ATTR_PREFIX,
    open_evaluator,
    run_evaluator,
    top_trials,
)
from hpo.objective import ADAPTER_KIND
from hpo.study import create_study, load_study
from tests.conftest import import_and_cluster

SHORT = EvalConfig(batch_size=16, max_new_tokens=6)
"""Short replies, one batch per method: the tests check the flow, not the replies."""
K, CLUSTER = 5, 0
"""The smallest cluster of five: four personas, 16 test examples."""


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four different adapters of the tiny model (random LoRA weights, one seed each)."""
    import dataclasses

    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from trainers.config import ModelConfig, TrainConfig
    from trainers.recipe import lora_config
    from trainers.tiny import ensure_tiny_model

    folder = tmp_path_factory.mktemp("adapters")
    config = dataclasses.replace(lora_config(TrainConfig()), init_lora_weights=False)
    out = []
    for seed in range(4):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(ModelConfig()))
        path = folder / f"adapter{seed}"
        get_peft_model(model, config).save_pretrained(str(path))
        out.append(path)
    return out


def make_study(url: str, root: Path, name: str) -> StudyConfig:
    """A study on cluster 1 of the ``demo`` dataset (imported and clustered once per URL)."""
    try:
        with storage.session_scope(storage.open_storage(url)) as session:
            storage.get_dataset_id(session, "demo")
    except storage.NotFoundError:
        import_and_cluster(url, root, "demo", k=K)
    config = StudyConfig(study=StudySection(name=name, k=K, cluster_id=CLUSTER, n_trials=8))
    create_study(config, url)
    return config


def add_trial(url: str, root: Path, name: str, adapter: Path, eval_loss: float) -> int:
    """A COMPLETE trial as a worker leaves it: its adapter in the study's trial folder,
    recorded with its sha256 in our artifacts and in the trial's user attributes."""
    study, _ = load_study(url, name)
    number = len(study.get_trials(deepcopy=False))
    target = storage.OutputLayout(root).trial_adapter_dir(name, number)
    shutil.copytree(adapter, target)
    sha256, size = storage.directory_sha256(target)
    with storage.session_scope(storage.open_storage(url)) as session:
        storage.record_artifact(
            session,
            kind=ADAPTER_KIND,
            path=target,
            sha256=sha256,
            size_bytes=size,
            study_name=name,
            trial_number=number,
        )
    study.add_trial(
        optuna.trial.create_trial(
            params={"learning_rate": 1e-4 * (number + 1)},
            distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2)},
            value=eval_loss,
            user_attrs={"adapter_path": str(target), "adapter_sha256": sha256},
        )
    )
    [trial] = [t for t in study.get_trials() if t.user_attrs.get("adapter_path") == str(target)]
    return trial.number


def trial_runs(url: str, name: str) -> dict[int, storage.RunInfo]:
    with storage.session_scope(storage.open_storage(url)) as session:
        runs = storage.list_evaluation_runs(session, name)
    methods = [r for r in runs if r.method == f"{TRIAL_METHOD}@{SHORT.key}"]
    assert len({r.trial_number for r in methods}) == len(methods)  # one run per trial
    return {r.trial_number: r for r in methods}


def folder_digest(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_top_k_by_eval_loss_are_evaluated_and_the_best_similarity_is_promoted(
    sqlite_url: str, tmp_path: Path, adapters: list[Path]
) -> None:
    make_study(sqlite_url, tmp_path, "watch")
    numbers = [
        add_trial(sqlite_url, tmp_path, "watch", adapters[i], loss)
        for i, loss in enumerate([0.9, 0.7, 0.8, 1.5])
    ]
    evaluator = open_evaluator(sqlite_url, "watch", output_root=tmp_path, eval_config=SHORT)
    assert [t.trial_number for t in top_trials(evaluator.study, 3)] == [
        numbers[1],
        numbers[2],
        numbers[0],
    ]
    result = run_evaluator(evaluator, once=True)

    top = {numbers[0], numbers[1], numbers[2]}
    assert sorted(result.evaluated) == sorted([*(f"trial:{n}" for n in top), "baselines"])
    runs = trial_runs(sqlite_url, "watch")
    assert set(runs) == top and all(r.status == "complete" for r in runs.values())
    assert result.results == tmp_path / "results/watch/cluster_lora/cluster_lora_results.json"
    report = json.loads(result.results.read_text())
    assert report == result.report
    rows = {row["trial"]: row for row in report["evaluated_trials"]}
    assert set(rows) == top
    best = max(top, key=lambda n: rows[n]["similarity"])
    assert len({rows[n]["similarity"] for n in top}) == 3  # the adapters differ
    assert report["promoted_trial"]["number"] == best
    assert [n for n in top if rows[n]["promoted"]] == [best]
    for row in rows.values():
        low, high = row["similarity_ci"]
        assert low <= row["similarity"] <= high
        assert {"floor", "normalized", "distinct_1", "distinct_2", "eval_loss"} <= set(row)
    assert set(report["methods"]) == {"cluster_lora", "base_model"}
    assert report["methods"]["cluster_lora"]["mean_similarity"] == rows[best]["similarity"]
    assert "cluster_lora - base_model" in report["comparisons"]

    promoted = tmp_path / "models/watch/lora_clusters/cluster_00"
    assert report["promoted_trial"]["adapter"] == str(promoted)
    assert json.loads((promoted / "promoted_from.json").read_text())["trial"] == best
    source = Path(report["promoted_trial"]["source_adapter"])
    assert (promoted / "adapter_model.safetensors").read_bytes() == (
        source / "adapter_model.safetensors"
    ).read_bytes()

    # the figures reach the dashboard as study user attributes; the metric is named
    study, _ = load_study(sqlite_url, "watch")
    attrs = study.user_attrs
    for n in top:
        attr = attrs[f"{TRIAL_ATTR_PREFIX}{n}"]
        assert attr["similarity"] == pytest.approx(rows[n]["similarity"])
        assert attr["similarity_ci"] == rows[n]["similarity_ci"]
        assert attr["distinct_2"] == rows[n]["distinct_2"]
    assert f"{TRIAL_ATTR_PREFIX}{numbers[3]}" not in attrs
    assert attrs[PROMOTED_ATTR]["trial"] == best
    assert study.metric_names == ["eval_loss"]

    # nothing new: nothing evaluated, nothing rewritten
    written = result.results.stat().st_mtime_ns
    again = run_evaluator(evaluator, once=True)
    assert again.evaluated == [] and again.results is None
    assert result.results.stat().st_mtime_ns == written

    # a new best trial by eval_loss enters the top 3: only it is evaluated
    newest = add_trial(sqlite_url, tmp_path, "watch", adapters[3], 0.5)
    third = run_evaluator(evaluator, once=True)
    assert third.evaluated == [f"trial:{newest}"]
    assert set(trial_runs(sqlite_url, "watch")) == top | {newest}
    assert third.report is not None
    assert {r["trial"] for r in third.report["evaluated_trials"]} == top | {newest}


@pytest.mark.slow
def test_a_second_study_on_the_same_cluster_leaves_the_first_ones_files_alone(
    sqlite_url: str, tmp_path: Path, adapters: list[Path]
) -> None:
    for name, first in (("first", 0), ("second", 2)):
        make_study(sqlite_url, tmp_path, name)
        add_trial(sqlite_url, tmp_path, name, adapters[first], 0.8)
        add_trial(sqlite_url, tmp_path, name, adapters[first + 1], 0.9)
    run_evaluator(
        open_evaluator(sqlite_url, "first", output_root=tmp_path, eval_config=SHORT), once=True
    )
    first_files = {
        "models": folder_digest(tmp_path / "models/first"),
        "results": folder_digest(tmp_path / "results/first"),
    }
    first_runs = trial_runs(sqlite_url, "first")
    assert first_files["models"] and first_files["results"]

    second = run_evaluator(
        open_evaluator(sqlite_url, "second", output_root=tmp_path, eval_config=SHORT), once=True
    )
    assert second.results == tmp_path / "results/second/cluster_lora/cluster_lora_results.json"
    assert (tmp_path / "models/second/lora_clusters/cluster_00/promoted_from.json").is_file()
    assert folder_digest(tmp_path / "models/first") == first_files["models"]
    assert folder_digest(tmp_path / "results/first") == first_files["results"]
    assert trial_runs(sqlite_url, "first") == first_runs
    assert not (tmp_path / "models/lora_clusters").exists()
    assert not (tmp_path / "results/cluster_lora").exists()


def test_optuna_refuses_user_attributes_on_a_finished_trial(sqlite_url: str) -> None:
    """Why the figures go into study user attributes (see docs/architecture.md)."""
    from hpo.study import optuna_storage

    rdb = optuna_storage(sqlite_url)
    study = optuna.create_study(study_name="attrs", storage=rdb)
    study.add_trial(optuna.trial.create_trial(value=1.0))
    trial_id = rdb.get_trial_id_from_study_id_trial_number(rdb.get_study_id_from_name("attrs"), 0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        rdb.set_trial_user_attr(trial_id, "similarity", 0.5)


def test_bad_settings_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid top_k 0"):
        open_evaluator(sqlite_url, "none", top_k=0)
    with pytest.raises(storage.NotFoundError, match="no study named 'none'"):
        open_evaluator(sqlite_url, "none")
