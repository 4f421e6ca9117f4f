"""The evaluator service on real parts: an Optuna study on SQL storage whose COMPLETE trials
carry real peft adapters of the tiny model (made here in place of training), real generation
and similarity, and the per-study output folders."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

import storage
from evaluators.config import EvalConfig
from evaluators.trials.promotion import TRIAL_METHOD
from hpo.evaluation.notes import trial_note
from hpo.evaluation.records import promoted_trial, trial_evaluations
from hpo.evaluation.service import (
    PROMOTED_ATTR,
    TRIAL_ATTR_PREFIX,
    open_evaluator,
    run_evaluator,
    top_trials,
)
from hpo.evaluation.study_work import BASELINE_SOURCE_ATTR
from hpo.study.config import StudyConfig, StudySection
from hpo.study.creation import create_study, load_study
from hpo.workers.objective import ADAPTER_KIND
from tests.conftest import import_and_cluster
from trainers.config import DataConfig, TrainConfig

MAX_STUDY_ROW = 300
"""Characters in one row of ``optuna studies``: a study's user attributes are printed whole."""


def assert_optuna_studies_rows_are_short(url: str) -> None:
    """The real ``optuna studies`` CLI prints every study of ``url`` in rows under
    :data:`MAX_STUDY_ROW` characters (the whole config and every evaluation used to be there)."""
    optuna_cli = Path(sys.executable).with_name("optuna")
    shown = subprocess.run(
        [str(optuna_cli), "studies", "--storage", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "user_attrs" in shown  # the attributes are printed, and short
    long = [line for line in shown.splitlines() if len(line) >= MAX_STUDY_ROW]
    assert long == [], f"rows of {[len(line) for line in long]} characters:\n{shown}"


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
    # Small training settings: the evaluator trains the unified baseline adapter with them.
    train = TrainConfig(epochs=1, data=DataConfig(max_train_per_persona=2, max_val_per_persona=1))
    config = StudyConfig(
        study=StudySection(name=name, k=K, cluster_id=CLUSTER, n_trials=8), train=train
    )
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
    """The study's trial evaluation runs under SHORT, its prompt limit from the study's
    training length as the evaluator resolves it."""
    with storage.session_scope(storage.open_storage(url)) as session:
        runs = storage.list_evaluation_runs(session, name)
    key = SHORT.for_training(load_study(url, name)[1].train.data.max_seq_length).key
    methods = [r for r in runs if r.method == f"{TRIAL_METHOD}@{key}"]
    assert len({r.trial_number for r in methods}) == len(methods)  # one run per trial
    return {r.trial_number: r for r in methods}


def study_attr(url: str, name: str, key: str) -> object:
    study, _ = load_study(url, name)
    return study.user_attrs.get(key)


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
    assert [t.trial_number for t in top_trials(evaluator.study, 3, evaluator.engine)] == [
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
    assert result.report is not None and report == result.report.to_dict(tmp_path)
    assert result.report.promoted.trial.trial_number == report["promoted_trial"]["number"]
    rows = {row["trial"]: row for row in report["evaluated_trials"]}
    assert set(rows) == top
    # the promotion rule: the best similarity, a degenerate trial last (it cannot win)
    best = max(top, key=lambda n: (not rows[n]["degenerate"], rows[n]["similarity"]))
    assert len({rows[n]["similarity"] for n in top}) == 3  # the adapters differ
    assert report["promoted_trial"]["number"] == best
    assert [n for n in top if rows[n]["promoted"]] == [best]
    for row in rows.values():
        low, high = row["similarity_ci"]
        assert low <= row["similarity"] <= high
        assert {"floor", "normalized", "distinct_1", "distinct_2", "eval_loss"} <= set(row)
    # every baseline on the identical examples, with its interval and a paired comparison
    # (cluster 0 is the tuned cluster here, so there is no separate cluster-0 baseline)
    baselines = {"base_model", "unified_adapter", "copy_persona", "reference_ceiling"}
    assert set(report["methods"]) == {"cluster_lora", "persona_swapped", *baselines}
    assert report["methods"]["cluster_lora"]["mean_similarity"] == rows[best]["similarity"]
    for name, method in report["methods"].items():
        ci = method["mean_similarity_ci"]
        assert ci["low"] <= method["mean_similarity"] <= ci["high"], name
        assert method["n_examples"] == report["methods"]["cluster_lora"]["n_examples"]
    # Holm over the decision rule's comparisons only; the yardsticks are described
    tested = {"cluster_lora - base_model", "cluster_lora - unified_adapter"}
    assert (
        report["tested_family"] == "promotion_comparisons"
        and set(report["promotion_comparisons"]) == tested
    )
    assert set(report["described"]) == {
        f"cluster_lora - {name}"
        for name in ("copy_persona", "reference_ceiling", "persona_swapped")
    }
    unified = tmp_path / "models/watch/baselines/unified_adapter"
    assert (unified / "adapter_model.safetensors").is_file()
    assert study_attr(sqlite_url, "watch", BASELINE_SOURCE_ATTR) in top

    promoted = tmp_path / "models/watch/lora_clusters/cluster_00"
    # paths under the output root: the results file names no folder of this machine
    assert report["promoted_trial"]["adapter"] == "models/watch/lora_clusters/cluster_00"
    assert str(tmp_path) not in json.dumps(report)
    assert json.loads((promoted / "promoted_from.json").read_text())["trial"] == best
    source = tmp_path / report["promoted_trial"]["source_adapter"]
    assert (promoted / "adapter_model.safetensors").read_bytes() == (
        source / "adapter_model.safetensors"
    ).read_bytes()

    # the figures are study records; the study's attributes stay short; the metric is named
    study, _ = load_study(sqlite_url, "watch")
    evaluated = trial_evaluations(storage.create_engine(sqlite_url), study)
    for n in top:
        attr = evaluated[n]
        assert attr["similarity"] == pytest.approx(rows[n]["similarity"])
        assert attr["similarity_ci"] == rows[n]["similarity_ci"]
        assert attr["distinct_2"] == rows[n]["distinct_2"]
    assert numbers[3] not in evaluated
    assert promoted_trial(study) == best
    assert not any(key.startswith(TRIAL_ATTR_PREFIX) for key in study.user_attrs)
    assert PROMOTED_ATTR not in study.user_attrs
    assert study.metric_names == ["eval_loss"]
    assert_optuna_studies_rows_are_short(sqlite_url)
    # each evaluated trial's figures are its note in the dashboard
    for n in top:
        note = trial_note(study, n)
        assert f"| embedding similarity | {100 * rows[n]['similarity']:.2f}% |" in note
        low, high = rows[n]["similarity_ci"]
        assert f"{100 * low:.2f}% to {100 * high:.2f}%" in note
        assert "floor" in note and "floor-normalized" in note and "distinct-1" in note
        assert ("**Promoted**" in note) is (n == best)
    assert trial_note(study, numbers[3]) == ""

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
    assert {r.trial.trial_number for r in third.report.trials} == top | {newest}


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


@pytest.mark.slow
def test_a_trial_whose_adapter_changed_is_skipped_and_the_others_go_on(
    sqlite_url: str, tmp_path: Path, adapters: list[Path]
) -> None:
    make_study(sqlite_url, tmp_path, "damaged")
    bad = add_trial(sqlite_url, tmp_path, "damaged", adapters[0], 0.5)
    good = add_trial(sqlite_url, tmp_path, "damaged", adapters[1], 0.9)
    weights = storage.OutputLayout(tmp_path).trial_adapter_dir("damaged", bad)
    (weights / "adapter_model.safetensors").write_bytes(b"not the recorded adapter")
    result = run_evaluator(
        open_evaluator(sqlite_url, "damaged", output_root=tmp_path, eval_config=SHORT), once=True
    )
    assert result.failed == [f"trial:{bad}"]
    assert result.evaluated == [f"trial:{good}", "baselines"]
    assert set(trial_runs(sqlite_url, "damaged")) == {good}
    assert result.report is not None and result.report.promoted.trial.trial_number == good


def test_optuna_refuses_user_attributes_on_a_finished_trial(sqlite_url: str) -> None:
    """Why the figures go into study user attributes (see docs/architecture.md)."""
    from hpo.study.creation import optuna_storage

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


# -- several evaluator processes on one PostgreSQL study -----------------------------------


def start_evaluator(
    url: str, root: Path, name: str, log: Path, *flags: str
) -> subprocess.Popen[bytes]:
    """``hpo evaluator --once`` in its own process, logging to ``log``."""
    command = [
        sys.executable, "-m", "hpo", "evaluator", "--study", name, "--once",
        "--storage", url, "--output-root", str(root),
        "--max-new-tokens", str(SHORT.max_new_tokens), *flags,
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def evaluated_here(log: Path, name: str) -> list[str]:
    """The targets an evaluator's log says it evaluated."""
    return re.findall(rf"evaluated (\S+) of {re.escape(name)}", log.read_text())


def check_runs(url: str, name: str, n_items: int) -> list[storage.RunInfo]:
    """Every run of the study complete, with one result per test example and no more."""
    with storage.session_scope(storage.open_storage(url)) as session:
        runs = storage.list_evaluation_runs(session, name)
        for run in runs:
            rows = storage.evaluation_results(session, run.id)
            assert run.status == "complete" and run.n_examples == n_items
            assert len(rows) == len({r.example_id for r in rows}) == n_items
        assert storage.list_leases(session, name) == []  # every lease given back
    return runs


@pytest.mark.slow
def test_two_evaluator_processes_never_evaluate_the_same_trial(
    pg_url: str, tmp_path: Path, adapters: list[Path]
) -> None:
    make_study(pg_url, tmp_path, "race")
    numbers = [
        add_trial(pg_url, tmp_path, "race", adapters[i], loss)
        for i, loss in enumerate([0.9, 0.7, 0.8, 1.5])
    ]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [
        start_evaluator(pg_url, tmp_path, "race", log, "--batch-size", str(SHORT.batch_size))
        for log in logs
    ]
    codes = [p.wait(timeout=900) for p in procs]
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)

    done = Counter(target for log in logs for target in evaluated_here(log, "race"))
    expected = {f"trial:{n}" for n in numbers[:3]} | {"baselines"}
    assert set(done) == expected and set(done.values()) == {1}  # each once, by one process
    n_items = len(open_evaluator(pg_url, "race", eval_config=SHORT).scope.items())
    runs = check_runs(pg_url, "race", n_items)
    assert sorted(r.trial_number for r in runs if r.trial_number >= 0) == sorted(numbers[:3])
    # the baselines once each: base model, unified adapter, copy-persona, ceiling, swap
    baseline_runs = [r.method.split(".")[0].split("@")[0] for r in runs if r.trial_number < 0]
    assert sorted(baseline_runs) == sorted(
        ["base_model", "unified_adapter", "copy_persona", "reference_ceiling", "persona_swapped"]
    )
    report = json.loads(
        (tmp_path / "results/race/cluster_lora/cluster_lora_results.json").read_text()
    )
    assert {row["trial"] for row in report["evaluated_trials"]} == set(numbers[:3])


@pytest.mark.slow
def test_a_killed_evaluators_lease_expires_and_another_finishes_its_work(
    pg_url: str, tmp_path: Path, adapters: list[Path]
) -> None:
    make_study(pg_url, tmp_path, "killed")
    number = add_trial(pg_url, tmp_path, "killed", adapters[0], 0.9)
    target = f"trial:{number}"
    one_by_one = ("--batch-size", "1", "--lease-ttl", "3", "--top-trials", "1")
    first = start_evaluator(pg_url, tmp_path, "killed", tmp_path / "a.log", *one_by_one)
    engine = storage.open_storage(pg_url)

    def partial() -> dict[int, str] | None:
        """The stored replies of the trial's run while it is leased and unfinished."""
        with storage.session_scope(engine) as session:
            lease = storage.get_lease(session, "killed", target)
            runs = [
                r
                for r in storage.list_evaluation_runs(session, "killed")
                if r.trial_number == number
            ]
            if lease is None or not runs or runs[0].status == "complete":
                return None
            rows = storage.evaluation_results(session, runs[0].id)
        return {r.example_id: r.generated for r in rows} or None

    deadline = time.monotonic() + 600
    while (before := partial()) is None:
        assert first.poll() is None, (tmp_path / "a.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the evaluator never started the trial"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    with storage.session_scope(engine) as session:
        held = storage.get_lease(session, "killed", target)
    assert held is not None  # left behind by the killed process, to expire by itself

    second = start_evaluator(pg_url, tmp_path, "killed", tmp_path / "b.log", *one_by_one)
    assert second.wait(timeout=900) == 0, (tmp_path / "b.log").read_text()[-3000:]
    # both finished by the second process (the baselines first while the dead lease runs out)
    assert sorted(evaluated_here(tmp_path / "b.log", "killed")) == sorted([target, "baselines"])
    n_items = len(open_evaluator(pg_url, "killed", eval_config=SHORT).scope.items())
    assert len(before) < n_items
    runs = check_runs(pg_url, "killed", n_items)
    [run] = [r for r in runs if r.trial_number == number]
    with storage.session_scope(engine) as session:
        after = {r.example_id: r.generated for r in storage.evaluation_results(session, run.id)}
    assert {k: after[k] for k in before} == before  # resumed: the killed one's rows kept
    report = json.loads(
        (tmp_path / "results/killed/cluster_lora/cluster_lora_results.json").read_text()
    )
    assert report["promoted_trial"]["number"] == number


@pytest.mark.slow
def test_an_evaluator_killed_mid_baselines_is_taken_over_within_seconds(
    pg_url: str, tmp_path: Path, adapters: list[Path]
) -> None:
    """With the default five-minute --lease-ttl: the next evaluator on the host sees that the
    lease's holder process is gone, takes the baselines over at once, and removes the unified
    adapter's temp folder a killed evaluator left."""
    from evaluators.baselines.runs import UNIFIED

    make_study(pg_url, tmp_path, "dead")
    add_trial(pg_url, tmp_path, "dead", adapters[0], 0.9)
    unified = storage.OutputLayout(tmp_path).baseline_adapter_dir("dead", UNIFIED)
    leftover = unified.parent / f".tmp-{UNIFIED}-k1ll3d"
    leftover.mkdir(parents=True)
    (leftover / "adapter_model.safetensors").write_bytes(b"partial")
    flags = ("--batch-size", "1", "--lease-ttl", "300", "--top-trials", "1")
    first = start_evaluator(pg_url, tmp_path, "dead", tmp_path / "a.log", *flags)
    engine = storage.open_storage(pg_url)

    def baselines_holder() -> str | None:
        with storage.session_scope(engine) as session:
            lease = storage.get_lease(session, "dead", "baselines")
        return None if lease is None else lease.holder

    deadline = time.monotonic() + 600
    while (dead := baselines_holder()) is None:
        assert first.poll() is None, (tmp_path / "a.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the evaluator never started the baselines"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)

    second = start_evaluator(pg_url, tmp_path, "dead", tmp_path / "b.log", *flags)
    started = time.monotonic()
    while baselines_holder() in (dead, None) and second.poll() is None:
        assert time.monotonic() - started < 60, "the dead evaluator's lease was not taken over"
        time.sleep(0.1)
    assert second.wait(timeout=900) == 0, (tmp_path / "b.log").read_text()[-3000:]
    assert "baselines" in evaluated_here(tmp_path / "b.log", "dead")
    assert "whose process is gone" in (tmp_path / "b.log").read_text()
    assert not leftover.exists()
    assert not list(unified.parent.glob(".tmp-*"))
    check_runs(pg_url, "dead", len(open_evaluator(pg_url, "dead", eval_config=SHORT).scope.items()))
