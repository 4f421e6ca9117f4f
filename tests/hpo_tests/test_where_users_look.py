"""What a user sees of a study, on one real study: a worker trains its trials (the first save
fails with a long message, so a FAIL and its retry are among them), the evaluator evaluates the
top two and promotes one, and per-persona adapters are trained for it and merged.

- ``optuna trials``, ``optuna best-trial`` and ``optuna studies`` (the real CLI) print rows
  under 300 characters, whatever the trials' attributes hold;
- ``hpo study status``, ``best`` and ``list`` name the promoted trial and its similarity beside
  the best by eval_loss, and the study's one-line decision; ``list`` shows the per-persona study
  as what it is;
- ``hpo evaluator --once`` prints the similarity table, ``--watch`` a line per evaluated trial;
- every adapter published has a filled model card, inside the folder its sha256 names.
"""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner, Result

import storage
from evaluators.config import EvalConfig
from hpo.cli import cli
from hpo.evaluation.records import DECISION_ATTR, DECISION_MAX
from hpo.evaluation.service import PassResult, StudyEvaluator, open_evaluator, run_evaluator
from hpo.study.creation import load_study
from hpo.study.trial_records import records_of
from hpo.workers.worker import run_worker
from tests.hpo_tests.invariants import check_invariants
from tests.hpo_tests.test_workers import prepare, small_study_config

NAME = "looks"
N_TRIALS = 4
MAX_ROW = 300
"""Characters in one row of Optuna's CLI tables."""
SHORT = EvalConfig(batch_size=16, max_new_tokens=6)
"""Short replies: the test checks what is shown, not the replies."""
PCT = r"-?\d+\.\d\d%"
"""A percentage as the tables and cards print it."""
LONG_ERROR = "No space left on device while writing " + "a very long path/" * 20


@dataclass
class Study:
    """The study every test here reads."""

    url: str
    root: Path
    evaluator: StudyEvaluator
    passes: list[PassResult]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    root = tmp_path_factory.mktemp("looks")
    url = f"sqlite:///{root / 'hpo.db'}"
    # four trials: the seed configs (the first fails once and is retried), then one of TPE's,
    # whose learning rate is a float of many digits in Optuna's tables
    prepare(url, root, small_study_config(name=NAME, n_trials=N_TRIALS))
    import trainers.recipe

    real_save, calls = trainers.recipe.save_adapter, []

    def save_adapter(model: Any, config: Any, save_dir: Path) -> None:
        calls.append(save_dir)
        if len(calls) == 1:  # the first save fails, with a message longer than a row
            raise OSError(errno.ENOSPC, LONG_ERROR)
        real_save(model, config, save_dir)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainers.recipe, "save_adapter", save_adapter)
        run_worker(url, NAME, output_root=root, threads=1, poll_seconds=0.1)
    evaluator = open_evaluator(url, NAME, output_root=root, eval_config=SHORT, top_k=2)
    passes: list[PassResult] = []
    run_evaluator(evaluator, once=True, on_pass=passes.append)
    from evaluators.moe.plan import MoeSettings
    from hpo.personas.moe import merge_moe
    from hpo.personas.training import train_persona_adapters

    overrides = {"epochs": 1, "max_train_per_persona": 1, "max_val_per_persona": 1}
    train_persona_adapters(url, NAME, output_root=root, overrides=overrides, progress=False)
    merge_moe(url, NAME, output_root=root, settings=MoeSettings(k=3))
    return Study(url, root, evaluator, passes)


def hpo(study: Study, *args: str) -> Result:
    result = CliRunner().invoke(
        cli, [*args, "--storage", study.url, "--output-root", str(study.root)], prog_name="hpo"
    )
    assert result.exit_code == 0, result.output
    return result


def optuna_cli(study: Study, *args: str) -> str:
    """The real ``optuna`` command's output."""
    command = [str(Path(sys.executable).with_name("optuna")), *args, "--storage", study.url]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def promoted_number(study: Study) -> int:
    report = json.loads(
        (study.root / f"results/{NAME}/cluster_lora/cluster_lora_results.json").read_text()
    )
    return int(report["promoted_trial"]["number"])


@pytest.mark.slow
def test_optuna_cli_rows_stay_short_and_the_long_records_are_ours(study: Study) -> None:
    trials = check_invariants(study.url, NAME, N_TRIALS, output_root=study.root)
    assert any(len(repr(t.params["learning_rate"])) > 15 for t in trials)  # TPE's
    states = {t.state for t in trials}
    assert optuna.trial.TrialState.FAIL in states and optuna.trial.TrialState.COMPLETE in states
    for args in (
        ("trials", "--study-name", NAME),
        ("best-trial", "--study-name", NAME),
        ("studies",),
    ):
        shown = optuna_cli(study, *args)
        assert "user_attrs" in shown, shown
        long = [len(line) for line in shown.splitlines() if len(line) >= MAX_ROW]
        assert long == [], f"optuna {args[0]}: rows of {long} characters:\n{shown}"
    # the long fields are the trials' records: the whole reason, the config, the adapter
    [failed] = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    records = records_of(storage.open_storage(study.url), NAME)
    assert LONG_ERROR[:200] in records[failed.number]["fail_reason"]
    assert failed.user_attrs["fail_reason"] == "OSError"  # the type; the message is ours
    for t in trials:
        assert "train_config" in records[t.number] and "train_config" not in t.user_attrs
    # `hpo study trials` shows the whole reason, from the record
    shown = hpo(study, "study", "trials", "--study", NAME).stdout
    assert "No space left on device while writing a very long path/" in shown


@pytest.mark.slow
def test_status_best_and_list_name_the_promoted_trial_and_the_decision(study: Study) -> None:
    number = promoted_number(study)
    status = hpo(study, "study", "status", "--study", NAME).stdout
    line = next(li for li in status.splitlines() if li.startswith("promoted trial (similarity)"))
    figures = rf"similarity {PCT} \(95% CI {PCT} to {PCT}\), eval_loss \d\.\d{{4}}"
    assert re.search(rf"\ttrial {number}: {figures}$", line), line
    assert "best trial (eval_loss)" in status
    decision = optuna.load_study(study_name=NAME, storage=study.url).user_attrs[DECISION_ATTR]
    assert re.fullmatch(
        rf"promoted trial {number}: similarity \d+\.\d\d%, best of 2 evaluated", decision
    )
    assert len(decision) <= DECISION_MAX and f"decision\t{decision}" in status
    as_json = json.loads(hpo(study, "study", "status", "--study", NAME, "--json").stdout)
    assert as_json["promoted"]["number"] == number and as_json["decision"] == decision
    low, high = as_json["promoted"]["similarity_ci"]
    assert low <= as_json["promoted"]["similarity"] <= high

    best = hpo(study, "study", "best", "--study", NAME).stdout
    header = best.splitlines()[1].split("\t")
    assert header[:4] == ["trial", "state", "eval_loss", "similarity"]
    rows = {int(r.split("\t")[0]): r.split("\t") for r in best.splitlines()[2:] if r[:1].isdigit()}
    assert "promoted" in rows[number][-1]
    assert sum(1 for r in rows.values() if r[3].endswith("%")) == 2  # the two evaluated
    best_json = json.loads(hpo(study, "study", "best", "--study", NAME, "--json").stdout)
    assert [r["number"] for r in best_json if r["promoted"]] == [number]

    listed = hpo(study, "study", "list").stdout.splitlines()
    assert listed[1].split("\t")[-2:] == ["best (trial)", "promoted (trial)"]
    [ours] = [r.split("\t") for r in listed if r.startswith(f"{NAME}\t")]
    assert ours[-1].endswith(f"% (#{number})")
    # the per-persona study: its personas as the target, no best, no "not made by hpo"
    [personas] = [r.split("\t") for r in listed if r.startswith(f"{NAME}-personas\t")]
    assert personas[1] == personas[2] != "-"  # every persona's adapter is trained
    assert personas[-2] == "per-persona" and personas[-1] == ""


@pytest.mark.slow
def test_the_evaluator_prints_its_table_once_and_a_line_per_trial_watching(
    study: Study, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.cli.evaluator import _print_pass

    number = promoted_number(study)
    flags = ("--top-trials", "2", "--batch-size", "16", "--max-new-tokens", "6")
    once = hpo(study, "evaluator", "--study", NAME, "--once", *flags)
    assert "evaluated here: nothing" in once.stdout  # all done: the study's table as it stands
    assert "# embedding similarity on cluster 2 test examples" in once.stdout
    assert re.search(rf"(?m)^trial {number}, promoted( \(degenerate\))?\t\d+\.\d\d\t", once.stdout)
    assert f"promoted: trial {number}" in once.stdout
    # what --watch printed of the pass that evaluated the two trials
    [first] = [p for p in study.passes if p.evaluated]
    _print_pass(study.evaluator, first)
    lines = capsys.readouterr().out.splitlines()
    evaluated = [li for li in lines if li.startswith("evaluated trial ")]
    assert len(evaluated) == 2, lines
    assert all(
        re.search(r": similarity \d+\.\d\d% \(95% CI .*\), eval_loss \d", li) for li in evaluated
    )
    assert lines[-1].startswith(f"promoted trial {number}: similarity ")


@pytest.mark.slow
def test_every_published_adapter_has_a_filled_model_card(study: Study) -> None:
    number = promoted_number(study)
    engine = storage.open_storage(study.url)
    complete = [
        t.number
        for t in load_study(study.url, NAME)[0].get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.COMPLETE
    ]
    cards = {f"trial {n}": study.root / f"models/trials/{NAME}/{n}/README.md" for n in complete}
    cards["promoted"] = study.root / f"models/{NAME}/lora_clusters/cluster_02/README.md"
    personas = sorted((study.root / f"models/{NAME}/personas").glob("*/README.md"))
    assert personas
    cards.update({f"persona {p.parent.name}": p for p in personas})
    for variant in ("moe_self", "moe_cold_start"):
        merged = sorted((study.root / f"models/{NAME}/{variant}").glob("*/README.md"))
        assert len(merged) == len(personas), variant
        cards.update({f"{variant} {p.parent.name}": p for p in merged})
    for what, path in cards.items():
        card = path.read_text(encoding="utf-8")
        assert card.startswith('---\nbase_model: "tiny-llama-v'), what
        assert "\nlibrary_name: peft\n" in card and '\n- "persona-hpo"\n' in card, what
        assert "More Information Needed" not in card and "BASE)" not in card, what
        assert "BASE_MODEL = ensure_tiny_model(ModelConfig(seed=0))" in card, what
        assert f'ADAPTER = "{path.parent.relative_to(study.root).as_posix()}"' in card, what
    promoted = cards["promoted"].read_text(encoding="utf-8")
    assert f"| trial | {number} (promoted: best similarity of 2 evaluated) |" in promoted
    similarity = rf"{PCT} \(95% CI {PCT} to {PCT}, personas resampled\)"
    examples = r"on \d+ test examples of \d+ personas"
    assert re.search(rf"\| embedding similarity \| {similarity} {examples} \|", promoted), promoted
    source = json.loads((cards["promoted"].parent / "promoted_from.json").read_text())
    assert source["trial"] == number and source["base_model"] == "tiny"
    assert source["base_model_name"].startswith("tiny-llama-v")
    # the card is inside the content the recorded sha256 names
    with storage.session_scope(engine) as session:
        for kind, trial in (("trial_adapter", complete[0]), ("cluster_adapter", number)):
            recorded = storage.get_artifact(session, kind=kind, study_name=NAME, trial_number=trial)
            assert recorded is not None
            local = storage.OutputLayout(study.root).root / recorded.path
            assert storage.directory_sha256(local)[0] == recorded.sha256
            assert (local / "README.md").is_file()
