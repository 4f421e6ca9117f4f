"""``hpo evaluate``: flags from EvalConfig, and a real run on a trained trial."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from evaluators.config import EvalConfig
from hpo.cli import EXIT_BAD_INPUT
from hpo.cli.dataclass_options import field_docs
from tests.conftest import import_and_cluster
from tests.hpo_tests.cli_tests.conftest import Hpo

STUDY = """
seed_trials = []

[study]
name = "evalcli"
dataset = "small"
k = 3
cluster_id = 2
n_trials = 1

[search_space]
exclude = ["epochs"]

[train]
epochs = 1

[train.data]
max_train_per_persona = 3
max_val_per_persona = 1
"""


def test_every_eval_config_field_is_a_documented_flag(hpo: Hpo) -> None:
    text = " ".join(hpo("evaluate", "--help").stdout.split())
    docs = field_docs(EvalConfig)
    for f in dataclasses.fields(EvalConfig):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
        assert docs[f.name] in text, f.name


@pytest.mark.parametrize(
    ("args", "flags"),
    [
        (("--batch-size", "0"), "'--batch-size'"),
        (("--temperature", "0.7", "--no-do-sample"), "'--temperature' / '--do-sample'"),
        (("--do-sample", "--top-p", "0"), "'--top-p'"),
    ],
)
def test_settings_eval_config_refuses_name_their_flags(
    hpo: Hpo, tmp_path: Path, args: tuple[str, ...], flags: str
) -> None:
    result = hpo("evaluate", "--study", "s", *args, "--storage", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"Invalid value for {flags}" in result.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.slow
def test_worker_then_evaluate_with_decoding_flags(hpo: Hpo, tmp_path: Path) -> None:
    """One trial by `hpo worker`, then `hpo evaluate` with sampling: the results file records
    the EvalConfig the flags built."""
    url = import_and_cluster(f"sqlite:///{tmp_path}/hpo.db", tmp_path, "small", k=3)
    config = tmp_path / "study.toml"
    config.write_text(STUDY, encoding="utf-8")
    assert hpo("study", "create", "--config", config, "--storage", url).exit_code == 0
    result = hpo("worker", "--study", "evalcli", "--storage", url, "--output-root", tmp_path)
    assert result.exit_code == 0, result.output
    assert "worker 0: 1 trials" in result.stdout
    result = hpo(
        "evaluate", "--study", "evalcli", "--storage", url, "--output-root", tmp_path,
        "--batch-size", "8", "--max-new-tokens", "8",
        "--do-sample", "--temperature", "0.7", "--seed", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip().splitlines()[-1].removeprefix("results: "))
    report = json.loads(path.read_text())
    expected = EvalConfig(batch_size=8, max_new_tokens=8, do_sample=True, temperature=0.7, seed=3)
    expected = expected.for_training(256)  # the prompt limit follows training's length
    assert expected.max_prompt_tokens == 248
    assert report["eval_config"] == expected.to_dict()
    assert report["eval_config_key"] == expected.key
    assert set(report["methods"]) == {
        "cluster_lora",
        "base_model",
        "unified_adapter",
        "cluster0_adapter",
        "copy_persona",
        "reference_ceiling",
        "persona_swapped",
    }
