"""``hpo evaluate --adapter DIR`` with a broken adapter: exit 2, one line naming the file at
fault, and no evaluation run left marked running (on the real PostgreSQL)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from hpo.cli import EXIT_BAD_INPUT
from tests.conftest import import_and_cluster, store_dataset_with_one_cluster
from tests.evaluators_tests.test_generation import unloadable_copy
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line
from tests.hpo_tests.cli_tests.test_evaluate import STUDY
from trainers.adapter_check import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_adapter_dir


@pytest.fixture(scope="module")
def good_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised LoRA adapter of the tiny model, as training saves one."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from trainers.config import ModelConfig, TrainConfig
    from trainers.recipe import lora_config
    from trainers.tiny import ensure_tiny_model

    model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(ModelConfig()))
    out = tmp_path_factory.mktemp("good-adapter") / "adapter"
    get_peft_model(model, lora_config(TrainConfig())).save_pretrained(str(out))
    return out


def _truncate(folder: Path) -> Path:
    weights = folder / ADAPTER_WEIGHTS
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return weights


def _randomize(folder: Path) -> Path:
    weights = folder / ADAPTER_WEIGHTS
    weights.write_bytes(os.urandom(weights.stat().st_size))
    return weights


def _break_config(folder: Path) -> Path:
    config = folder / ADAPTER_CONFIG
    config.write_text('{"peft_type": "LORA", "r": ', encoding="utf-8")
    return config


def _nest_config(folder: Path) -> Path:
    """100,000 levels deep: Python's parser ran out of recursion, exit 1 with no file named."""
    config = folder / ADAPTER_CONFIG
    config.write_text('{"peft_type": "LORA",\n"r": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return config


def _remove_weights(folder: Path) -> Path:
    weights = folder / ADAPTER_WEIGHTS
    weights.unlink()
    return weights


def _wrong_shape(folder: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    weights = folder / ADAPTER_WEIGHTS
    tensors = load_file(str(weights))
    key = next(k for k in sorted(tensors) if "lora_A" in k)
    rank, columns = tensors[key].shape
    tensors[key] = torch.zeros(rank + 1, columns)
    save_file(tensors, str(weights))
    return weights


BREAKS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated weights": (_truncate, "not a readable safetensors file"),
    "random weights": (_randomize, "not a readable safetensors file"),
    "broken config": (_break_config, "line 1: not valid JSON: Expecting value (column 28)"),
    "nested config": (_nest_config, "line 2: nested deeper than 64 levels"),
    "missing weights": (_remove_weights, "missing: the adapter has no weights file"),
    "wrong tensor shape": (_wrong_shape, "expected 8 rows (r=8)"),
}


def test_a_good_adapter_passes_the_check(good_adapter: Path) -> None:
    check_adapter_dir(good_adapter)


@pytest.mark.postgres
def test_a_broken_adapter_is_refused_naming_the_file(
    hpo: Hpo, pg_url: str, tmp_path: Path, good_adapter: Path
) -> None:
    import_and_cluster(pg_url, tmp_path, "small", k=3)
    config = tmp_path / "study.toml"
    config.write_text(STUDY, encoding="utf-8")
    assert hpo("study", "create", "--config", config, "--storage", pg_url).exit_code == 0
    for name, (damage, reason) in BREAKS.items():
        folder = tmp_path / name.replace(" ", "-")
        shutil.copytree(good_adapter, folder)
        broken = damage(folder)
        result = hpo(
            "evaluate", "--study", "evalcli", "--adapter", folder,
            "--storage", pg_url, "--output-root", tmp_path,
        )  # fmt: skip
        assert result.exit_code == EXIT_BAD_INPUT, (name, result.output[-2000:])
        line = one_line(result)
        assert line.startswith(f"hpo: error: {broken}: ") and reason in line, (name, line)
        assert "Repo id" not in line
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            running = conn.execute(
                sa.text("SELECT count(*) FROM evaluation_runs WHERE status = 'running'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert running == 0


@pytest.mark.postgres
def test_an_adapter_that_does_not_load_closes_its_run_as_failed(
    hpo: Hpo, pg_url: str, tmp_path: Path, good_adapter: Path
) -> None:
    """An adapter that passes the pre-check but does not fit the base model fails when peft
    loads it, after its evaluation run was opened: the run is closed as failed with the
    reason, and the command exits 2 with one line naming the folder (before any baseline is
    trained)."""
    store_dataset_with_one_cluster(pg_url, "small")
    config = tmp_path / "study.toml"
    config.write_text(
        '[study]\nname = "loadfail"\ndataset = "small"\nk = 1\ncluster_id = 0\n', encoding="utf-8"
    )
    assert hpo("study", "create", "--config", config, "--storage", pg_url).exit_code == 0
    wide = unloadable_copy(good_adapter, tmp_path / "wide")  # passes check_adapter_dir
    result = hpo(
        "evaluate", "--study", "loadfail", "--adapter", wide,
        "--storage", pg_url, "--output-root", tmp_path,
    )  # fmt: skip
    assert result.exit_code == EXIT_BAD_INPUT, result.output[-2000:]
    assert "Traceback" not in result.stderr
    # the base model was loaded: transformers' "Loading weights" bar comes before the error
    shown = result.stderr.splitlines()
    (line,) = [ln for ln in shown if ln.strip() and not ln.startswith("Loading weights")]
    assert line.startswith(f"hpo: error: {wide}: does not load onto the base model "), line
    assert "size mismatch" in line
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(sa.text("SELECT method, status, failure FROM evaluation_runs"))
            ((method, status, failure),) = runs.all()
    finally:
        engine.dispose()
    assert method.startswith("adapter-") and status == "failed"
    assert failure.startswith(f"AdapterError: {wide}: does not load onto the base model ")
    assert "size mismatch" in failure and "\n" not in failure
