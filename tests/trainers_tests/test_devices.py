"""One device per process, precision by device, and the model settings that reach it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.trainers_tests.conftest import SaveModel
from trainers.base_model import choose_precision, load_base_model, resolve_device
from trainers.config import ModelConfig, TrainConfig
from trainers.recipe import training_arguments

PAIRS = 10
"""Training pairs of the step-count test: not a multiple of its batch size."""


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_device_values_are_accepted(device: str) -> None:
    assert ModelConfig(device=device).device == device


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cuda:", "gpu:0", "cuda:0,1"])
def test_other_devices_are_refused_naming_the_field(device: str) -> None:
    with pytest.raises(ValueError, match=rf"invalid model\.device='{device}': expected 'auto'"):
        ModelConfig(device=device)


@pytest.mark.parametrize(
    ("field", "value"), [("attn_implementation", "flash"), ("prompt_format", "markdown")]
)
def test_model_settings_are_checked(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"invalid model\.{field}='{value}': expected one of"):
        ModelConfig(**{field: value})


def test_one_device_is_resolved() -> None:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert resolve_device("auto") == ("cuda:0" if count else "cpu")
    assert resolve_device("cpu") == "cpu"
    assert choose_precision("cpu") == "fp32"
    if count:
        assert resolve_device("cuda") == "cuda:0"
    with pytest.raises(ValueError, match=rf"model\.device='cuda:{count}': {count} CUDA"):
        resolve_device(f"cuda:{count}")


def test_training_uses_one_device_and_steps_of_batch_size(
    random_model: SaveModel, tmp_path: Any
) -> None:
    """The Trainer the recipe builds runs on the process's device alone: no DataParallel,
    and an epoch is ceil(n_train / batch_size) steps whatever the GPUs."""
    from transformers import Trainer

    from trainers.batching import PromptPair, collator, tokenize_pairs
    from trainers.recipe import train_lora

    base = load_base_model(ModelConfig(base_model=str(random_model("qwen2"))))
    config = TrainConfig(epochs=2, batch_size=4, evals_per_epoch=1)
    args = training_arguments(config, str(tmp_path), 3, base.device, progress=False)
    assert args.n_gpu == (0 if base.device == "cpu" else 1)
    assert str(args.device) == base.device
    assert (args.bf16, args.fp16) == (base.precision == "bf16", base.precision == "fp16")
    pairs = [PromptPair(f"Persona: I hike.\nA: Hi {i}!\nB:", " I love hiking.") for i in range(10)]
    rows = tokenize_pairs(base.tokenizer, pairs, 64).rows
    trainer = Trainer(
        model=base.model,
        args=args,
        train_dataset=rows,  # type: ignore[arg-type]
        eval_dataset=rows,  # type: ignore[arg-type]
        data_collator=collator(base.tokenizer),
    )
    assert len(trainer.get_train_dataloader()) == math.ceil(PAIRS / config.batch_size)
    result = train_lora(base, config, pairs, pairs[:2])
    assert result.train_steps == config.epochs * math.ceil(PAIRS / config.batch_size)


def test_attention_and_checkpointing_settings_reach_the_model(random_model: SaveModel) -> None:
    from trainers.batching import PromptPair
    from trainers.recipe import train_lora

    config = ModelConfig(
        base_model=str(random_model("qwen2")),
        attn_implementation="eager",
        gradient_checkpointing=True,
    )
    base = load_base_model(config)
    assert base.model.config._attn_implementation == "eager"
    pairs = [PromptPair("Persona: I hike.\nA: Hi!\nB:", " I love hiking.")] * 4
    result = train_lora(base, TrainConfig(epochs=1, batch_size=2), pairs, pairs[:2])
    assert all(math.isfinite(loss) for _, loss in result.eval_losses)
    assert not base.model.is_activation_checkpointing


def test_embeddings_run_on_the_process_device() -> None:
    from trainers.embedding import load_embedding_model

    model = load_embedding_model(None)
    assert str(model.device) == resolve_device("auto")
