"""Fixtures of the evaluator tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def zero_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised adapter (lora_B = 0) made on a separate copy of the tiny model."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from trainers.config import ModelConfig, TrainConfig
    from trainers.recipe import lora_config
    from trainers.tiny import ensure_tiny_model

    model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(ModelConfig()))
    out = tmp_path_factory.mktemp("zero-adapter") / "adapter"
    get_peft_model(model, lora_config(TrainConfig())).save_pretrained(str(out))
    return out
