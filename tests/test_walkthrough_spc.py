"""A slice of the walkthrough "Tuning on Synthetic-Persona-Chat" (docs/real-data.md), on the
real CSV.

The first conversations of the validation split go through the walkthrough's commands, run
in-process with click's CliRunner: ``hpo data import`` with its flags, ``hpo data cluster``
(k=3 instead of 5, for the few personas), ``hpo study create`` from the packaged
``hpo/configs/spc.toml`` with two trials, one ``hpo worker``, and ``hpo evaluator --once``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner, Result

import storage
from hpo.cli import cli
from hpo.study.config import load_config, packaged_config
from tests.datafiles import SPC_CSV

N_CONVERSATIONS = 30
"""Rows of the slice: 43 personas with 12 or more replies."""
K = 3
"""Clusters of the slice; the walkthrough uses 5 on the whole file."""
TRIAL_METHOD, BASE_METHOD = "cluster_lora", "base_model"
"""Method names in the results file and the evaluation runs, as docs/real-data.md shows them."""


@pytest.fixture
def hpo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CliRunner in ``tmp_path``, with the storage and output root of the slice."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPO_STORAGE", f"sqlite:///{tmp_path / 'hpo.db'}")
    monkeypatch.setenv("HPO_OUTPUT_ROOT", str(tmp_path))
    yield CliRunner()
    storage.dispose_engines()


def run(runner: CliRunner, *args: str | Path) -> Result:
    """``hpo ARGS...``; fails the test with the output unless it exits 0."""
    result = runner.invoke(cli, [str(a) for a in args], prog_name="hpo")
    assert result.exit_code == 0, f"hpo {' '.join(map(str, args))}:\n{result.output}"
    return result


def write_slice(path: Path, n_rows: int) -> Path:
    """The header and the first ``n_rows`` conversations of the real CSV, read and written
    back with the csv module (persona and conversation cells hold newlines)."""
    with SPC_CSV.open(newline="", encoding="utf-8") as source:
        rows = list(csv.reader(source))[: n_rows + 1]
    assert rows[0] == ["user 1 personas", "user 2 personas", "Best Generated Conversation"]
    with path.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(rows)
    return path


def slice_config(path: Path) -> Path:
    """The packaged walkthrough config with the slice's clustering: k=3, its largest cluster."""
    text = packaged_config("spc").read_text(encoding="utf-8")
    text, n_k = re.subn(r"(?m)^k = 5$", f"k = {K}", text)
    text, n_cluster = re.subn(r"(?m)^cluster_id = 4\b", f"cluster_id = {K - 1}", text)
    assert (n_k, n_cluster) == (1, 1), "spc.toml no longer reads k = 5, cluster_id = 4"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.timeout(600, func_only=True)
def test_walkthrough_slice_on_synthetic_persona_chat(hpo: CliRunner, tmp_path: Path) -> None:
    csv_path = write_slice(tmp_path / "spc_slice.csv", N_CONVERSATIONS)
    imported = run(
        hpo, "data", "import", csv_path, "--name", "spc", "--min-examples", "12", "--n-test", "2"
    )
    assert imported.output.startswith("synthetic_persona_chat: kept 43 personas, dropped 17")

    clustered = run(hpo, "data", "cluster", "--dataset", "spc", "--k", str(K))
    assert "all" in clustered.output and "43" in clustered.output

    config = load_config(slice_config(tmp_path / "spc.toml"))
    study_name = config.study.name
    run(hpo, "study", "create", "--config", tmp_path / "spc.toml", "--n-trials", "2")
    worker = run(hpo, "worker", "--study", study_name, "--threads", "1")
    assert "worker 0: 2 trials" in worker.output, worker.output

    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    every = optuna.load_study(study_name=study_name, storage=url).get_trials(deepcopy=False)
    # the budget of 2 ran the first two of spc.toml's three seed configs; the third stays
    # queued (WAITING) for a raised budget
    waiting = optuna.trial.TrialState.WAITING
    trials = [t for t in every if t.state != waiting]
    assert [t.number for t in trials] == [0, 1] and len(every) == len(config.seed_trials)
    states = [t.state for t in trials]
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert states[0] == optuna.trial.TrialState.COMPLETE  # the first trial is never pruned
    assert [t.params for t in trials] == [dict(s) for s in config.seed_trials[:2]]

    run(hpo, "evaluator", "--study", study_name, "--once", "--top-trials", "2")
    # where docs/real-data.md says the study's evaluation report goes
    results = tmp_path / "results" / study_name / "cluster_lora" / "cluster_lora_results.json"
    report = json.loads(results.read_text(encoding="utf-8"))
    assert report["cluster_id"] == K - 1
    n_test = report["n_test_examples"]
    assert n_test == 2 * report["n_personas"] > 0  # --n-test 2
    complete = {t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert {t["trial"] for t in report["evaluated_trials"]} == complete
    for entry in report["evaluated_trials"]:
        assert -1 <= entry["floor"] <= 1 and -1 <= entry["similarity"] <= 1, entry
        assert entry["n_examples"] == n_test
    for method in (TRIAL_METHOD, BASE_METHOD):
        summary = report["methods"][method]
        assert summary["n_examples"] == n_test
        assert -1 <= summary["floor"] <= 1 and -1 <= summary["mean_similarity"] <= 1, summary
    assert report["promoted_trial"]["number"] in complete
    assert (tmp_path / report["promoted_trial"]["adapter"]).is_dir()  # under the output root

    # read the replies, not only the scores: every test example has one, and they differ
    engine = storage.open_storage(url)
    with storage.session_scope(engine) as session:
        runs = [
            r for r in storage.list_evaluation_runs(session, study_name) if r.status == "complete"
        ]
        replies = {
            r.method: [row.generated for row in storage.evaluation_results(session, r.id)]
            for r in runs
        }
    trial_runs = [m for m in replies if m.startswith(f"{TRIAL_METHOD}@")]
    base_runs = [m for m in replies if m.startswith(f"{BASE_METHOD}@")]
    assert len(trial_runs) == len(complete) and len(base_runs) == 1, sorted(replies)
    for method in trial_runs + base_runs:
        assert len(replies[method]) == n_test, method
        assert len(set(replies[method])) > 1, f"{method}: every reply is {replies[method][0]!r}"
