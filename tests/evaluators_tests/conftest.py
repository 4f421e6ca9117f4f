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


@pytest.fixture(scope="module")
def random_adapters(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three adapters of other ranks with random, small weights (so their replies differ from
    the base model's and from each other's), made on a separate copy of the tiny model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from trainers.config import ModelConfig
    from trainers.tiny import ensure_tiny_model

    folder = tmp_path_factory.mktemp("random-adapters")
    paths = []
    for i in range(3):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(ModelConfig()))
        config = LoraConfig(r=2 + i, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, weight in peft_model.named_parameters():
                if "lora_B" in name:
                    weight.mul_(0.3)
        peft_model.save_pretrained(str(folder / f"adapter{i}"))
        paths.append(folder / f"adapter{i}")
    return paths
