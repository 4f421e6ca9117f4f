"""Which layers LoRA adapts as a dimension of the search space: the ``lora_targets`` preset."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.study.config import ConfigError, load_config, train_config_for
from hpo.study.space import suggest

CONFIG = """
[study]
name = "targets"
dataset = "demo"

[search_space.lora_targets]
type = "categorical"
choices = ["attention", "linear"]
"""


def test_lora_targets_is_a_categorical_dimension(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    assert config.search_space["lora_targets"].choices == ("attention", "linear")
    for choice in ("attention", "linear"):
        trial = optuna.trial.FixedTrial(
            {"epochs": 1, "batch_size": 2, "learning_rate": 1e-4, "lora_rank": 8}
            | {"lora_targets": choice}
        )
        assert train_config_for(config, suggest(trial, config.search_space)).lora_targets == choice


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", r"search_space\.lora_targets\.choices\[1\]='every'.*one of attention, linear"),
        (
            '[train]\ntarget_modules = ["q_proj"]\n',
            r"search_space\.lora_targets\.choices\[1\]='linear'.*'attention' when target_modules",
        ),
    ],
)
def test_a_preset_that_cannot_apply_is_refused(tmp_path: Path, extra: str, expected: str) -> None:
    text = CONFIG + extra
    if not extra:
        text = text.replace('"linear"]', '"every"]')
    path = tmp_path / "study.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)
