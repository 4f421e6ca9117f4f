"""The base-model check: config only, one line naming the field, before a study exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.hpo_tests.cli_tests.conftest import Hpo, one_line
from tests.hpo_tests.cli_tests.conftest import hpo as _hpo
from tests.trainers_tests.conftest import SaveModel
from trainers.config import ModelConfig
from trainers.model_check import check_base_model

hpo = _hpo
"""The ``hpo`` command line in-process (the CLI tests' fixture)."""


@pytest.mark.parametrize(
    ("architecture", "targets"),
    [
        ("qwen2", "q_proj, v_proj (peft default)"),
        ("gpt2", "c_attn (peft default)"),
        ("phi3", "o_proj, qkv_proj (attention projections)"),
        ("olmoe", "q_proj, k_proj, v_proj, o_proj (attention projections)"),
        ("qwen2_moe", "q_proj, k_proj, v_proj, o_proj (attention projections)"),
    ],
)
def test_a_causal_lm_passes_and_names_its_targets(
    random_model: SaveModel, architecture: str, targets: str
) -> None:
    found = check_base_model(ModelConfig(base_model=str(random_model(architecture))))
    assert (found.model_type, found.targets) == (architecture, targets)


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        ("t5", "t5 is an encoder-decoder model; expected a decoder-only causal LM"),
        ("bert", "bert is an encoder-only model (bidirectional attention"),
    ],
)
def test_encoder_models_are_refused(
    random_model: SaveModel, architecture: str, message: str
) -> None:
    path = random_model(architecture)
    pattern = rf"^model\.base_model={re.escape(repr(str(path)))}: {re.escape(message)}"
    with pytest.raises(ValueError, match=pattern) as info:
        check_base_model(ModelConfig(base_model=str(path)))
    assert "\n" not in str(info.value)


def test_configured_targets_must_exist(random_model: SaveModel) -> None:
    with pytest.raises(ValueError, match=r"train\.target_modules names 'c_proj'"):
        check_base_model(
            ModelConfig(base_model=str(random_model("qwen2"))), target_modules=("c_proj",)
        )


def test_tilde_is_expanded_as_the_loader_expands_it(
    random_model: SaveModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainers.base_model import load_base_model

    path = random_model("qwen2")
    monkeypatch.setenv("HOME", str(path.parent))
    config = ModelConfig(base_model=f"~/{path.name}", device="cpu")
    assert check_base_model(config).model_type == "qwen2"
    assert load_base_model(config).model.config.model_type == "qwen2"
    with pytest.raises(ValueError, match=r"model\.base_model='~/nothing': no such folder"):
        check_base_model(ModelConfig(base_model="~/nothing"))


def _custom_code_model(random_model: SaveModel, tmp_path: Path) -> Path:
    """A model with its own code (``auto_map``): a subclass of Qwen2, under a new type."""
    import shutil

    folder = tmp_path / "custom"
    shutil.copytree(random_model("qwen2"), folder)
    (folder / "configuration_mine.py").write_text(
        "from transformers import Qwen2Config\n\n\n"
        "class MineConfig(Qwen2Config):\n    model_type = 'mine'\n"
    )
    (folder / "modeling_mine.py").write_text(
        "from transformers import Qwen2ForCausalLM\n\n"
        "from .configuration_mine import MineConfig\n\n\n"
        "class MineForCausalLM(Qwen2ForCausalLM):\n    config_class = MineConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="mine",
        architectures=["MineForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_mine.MineConfig",
            "AutoModelForCausalLM": "modeling_mine.MineForCausalLM",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_custom_code_needs_trust_remote_code(random_model: SaveModel, tmp_path: Path) -> None:
    folder = _custom_code_model(random_model, tmp_path)
    with pytest.raises(ValueError, match=r"own code.*model\.trust_remote_code = true"):
        check_base_model(ModelConfig(base_model=str(folder)))
    found = check_base_model(ModelConfig(base_model=str(folder), trust_remote_code=True))
    assert found.model_type == "mine"
    assert found.targets == "q_proj, k_proj, v_proj, o_proj (attention projections)"


def test_study_create_refuses_t5_naming_file_and_field(
    hpo: Hpo, random_model: SaveModel, tmp_path: Path
) -> None:
    config = tmp_path / "t5.toml"
    config.write_text(
        f'[study]\nname = "x"\ndataset = "d"\n[model]\nbase_model = "{random_model("t5")}"\n'
    )
    result = hpo("study", "create", "--config", config, "--storage", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert line.startswith(f"hpo: error: {config}: model.base_model="), line
    assert "encoder-decoder" in line
    assert not (tmp_path / "x.db").exists()


def test_train_refuses_bert(hpo: Hpo, random_model: SaveModel, tmp_path: Path) -> None:
    result = hpo(
        "train", "--base-model", random_model("bert"), "--storage", f"sqlite:///{tmp_path}/x.db"
    )
    assert result.exit_code == 2, result.output
    assert "model.base_model=" in one_line(result) and "encoder-only" in one_line(result)
    assert not (tmp_path / "x.db").exists()


def test_study_create_with_an_uncached_hub_id_offline_names_the_cache(
    hpo: Hpo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    config = tmp_path / "hub.toml"
    config.write_text(
        '[study]\nname = "x"\ndataset = "d"\n[model]\nbase_model = "no-org/not-cached"\n'
    )
    result = hpo("study", "create", "--config", config, "--storage", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert line.startswith(
        f"hpo: error: {config}: model.base_model='no-org/not-cached': its config.json is not "
        f"in the local Hugging Face cache ({tmp_path / 'hub'}) and the machine is offline"
    ), line
    assert "hf download no-org/not-cached" in line
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.db").exists()
