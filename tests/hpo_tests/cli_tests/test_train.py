"""``hpo train``: flags derived from the config dataclasses, and a real training run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hpo.cli import EXIT_BAD_INPUT
from hpo.cli.dataclass_options import field_docs
from tests.conftest import import_and_cluster
from tests.hpo_tests.cli_tests.conftest import Hpo
from trainers.config import DataConfig, TrainConfig


def test_help_is_the_dataclasses_own(hpo: Hpo) -> None:
    """Every TrainConfig and DataConfig field is a flag whose help is the field's docstring
    and whose default is the field's default: nothing is restated in the CLI."""
    result = hpo("train", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for cls in (TrainConfig, DataConfig):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name == "data":
                continue
            assert f"--{f.name.replace('_', '-')}" in text, f.name
            assert docs[f.name] in text, f.name
    assert "--learning-rate, --lr FLOAT" in text and "--lora-rank, --rank INTEGER" in text
    assert f"[default: {TrainConfig.epochs}]" in text


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--epochs", "0"), "--epochs"),
        (("--lr", "2"), "--learning-rate"),
        (("--rank", "0"), "--lora-rank"),
        (("--max-train-per-persona", "0"), "--max-train-per-persona"),
        (("--k", "3", "--cluster-id", "3"), "--cluster-id"),
        (("--device", "tpu"), "--device"),
        (("--epochs", "two"), "--epochs"),
    ],
)
def test_a_bad_value_is_refused_naming_its_flag(
    hpo: Hpo, tmp_path: Path, args: tuple[str, ...], flag: str
) -> None:
    result = hpo("train", *args, "--storage", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert f"Invalid value for '{flag}'" in result.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened


def test_the_original_flags_train_a_loadable_adapter(hpo: Hpo, tmp_path: Path) -> None:
    from peft.utils import CONFIG_NAME

    url = import_and_cluster(f"sqlite:///{tmp_path / 'train.db'}", tmp_path, "small", k=3)
    result = hpo(
        "train",
        "--dataset", "small", "--k", "3", "--cluster-id", "2",
        "--epochs", "1", "--batch-size", "4", "--lr", "5e-4", "--rank", "4",
        "--max-train-per-persona", "3",
        "--storage", url, "--output-root", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "eval_loss" in result.stdout
    adapter = tmp_path / "models" / "lora_clusters" / "cluster_02"
    assert json.loads((adapter / CONFIG_NAME).read_text())["r"] == 4
    assert "eval_loss=" in (tmp_path / "logs" / "train-cluster-02.log").read_text()
