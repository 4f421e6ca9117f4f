"""The base model a worker keeps across trials: loaded on its device, and left by each trial as
it found it (no hook added by gradient checkpointing stays behind)."""

from __future__ import annotations

import pytest

from tests.trainers_tests.conftest import SaveModel
from trainers.base_model import load_base_model
from trainers.batching import PromptPair
from trainers.config import ModelConfig, TrainConfig
from trainers.recipe import train_lora

PAIRS = [PromptPair(f"Persona: I hike.\nA: Hi {n}!\nB:", f" I walk {n} dogs.") for n in range(4)]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_the_base_model_is_loaded_onto_its_device_in_one_piece(random_model: SaveModel) -> None:
    base = load_base_model(ModelConfig(base_model=str(random_model("qwen2")), device="cpu"))
    assert {str(p.device) for p in base.model.parameters()} == {"cpu"}
    # one device: no accelerate dispatch hooks, and the Trainer does not see a split model
    assert getattr(base.model, "hf_device_map", None) is None
    assert not hasattr(base.model, "_hf_hook")


@pytest.mark.gpu
@pytest.mark.skipif("not _cuda()", reason="needs a CUDA device")
def test_the_base_model_is_loaded_straight_onto_the_gpu(random_model: SaveModel) -> None:
    import torch

    base = load_base_model(ModelConfig(base_model=str(random_model("qwen2")), device="cuda:0"))
    assert {p.device for p in base.model.parameters()} == {torch.device("cuda:0")}
    assert getattr(base.model, "hf_device_map", None) is None


@pytest.mark.slow
def test_gradient_checkpointing_leaves_no_hook_on_the_embeddings(random_model: SaveModel) -> None:
    """transformers' checkpointing adds a forward hook on the input embeddings; before, one
    more stayed after every trial (1, 2, 3 after three trials)."""
    base = load_base_model(
        ModelConfig(base_model=str(random_model("llama")), gradient_checkpointing=True)
    )
    embeddings = base.model.get_input_embeddings()
    hooks = [len(embeddings._forward_hooks)]
    for seed in range(3):
        config = TrainConfig(epochs=1, batch_size=2, evals_per_epoch=1, seed=seed)
        result = train_lora(base, config, PAIRS, PAIRS[:2])
        assert result.train_steps == 2
        hooks.append(len(embeddings._forward_hooks))
    assert hooks == [hooks[0]] * 4, hooks
    assert not base.model.is_activation_checkpointing
