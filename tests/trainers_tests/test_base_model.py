"""Loading a base model: the tiny one or any Hugging Face model path; load errors name it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainers.base_model import load_base_model, parameter_count
from trainers.config import ModelConfig


def test_default_tiny_model_is_small(tiny_base: Any) -> None:
    n = parameter_count(tiny_base.model)
    assert 0 < n < 5_000_000
    assert tiny_base.name == "tiny"
    assert tiny_base.device == "cpu" or tiny_base.device.startswith("cuda:")


def test_load_unknown_model_names_it() -> None:
    with pytest.raises(ValueError, match="no/such-model-xyz"):
        load_base_model(ModelConfig(base_model="no/such-model-xyz", device="cpu"))


def test_any_hugging_face_model_path_trains_and_generates(tmp_path: Path) -> None:
    """`base_model` may name any local Hugging Face model: here a GPT-2 architecture, which
    peft adapts on its own target modules (c_attn)."""
    from peft.utils import CONFIG_NAME
    from transformers import GPT2Config, GPT2LMHeadModel

    from trainers.batching import PromptPair
    from trainers.config import TrainConfig
    from trainers.recipe import train_lora
    from trainers.tiny import ensure_tiny_model

    tokenizer_dir = ensure_tiny_model(ModelConfig())
    gpt2_dir = tmp_path / "gpt2-tiny"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=2, n_positions=256)
    )
    model.save_pretrained(gpt2_dir)
    tokenizer.save_pretrained(gpt2_dir)

    base = load_base_model(ModelConfig(base_model=str(gpt2_dir)))
    assert base.model.config.model_type == "gpt2"
    pairs = [PromptPair("Persona: I hike.\nA: Hi!\nB:", " I love hiking.")] * 8
    result = train_lora(
        base, TrainConfig(epochs=1, batch_size=4), pairs, pairs[:2], save_dir=tmp_path / "adapter"
    )
    assert result.eval_losses and (tmp_path / "adapter" / CONFIG_NAME).is_file()
    assert '"c_attn"' in (tmp_path / "adapter" / CONFIG_NAME).read_text()


def test_loading_moves_resident_objects_out_of_the_collectors_sight() -> None:
    """A process that holds the model: gc.collect() need not scan it at every Trainer.train."""
    import gc
    import subprocess
    import sys

    code = (
        "import gc\n"
        "from trainers.base_model import load_base_model\n"
        "from trainers.config import ModelConfig\n"
        "base = load_base_model(ModelConfig())\n"
        "print(gc.get_freeze_count(), len(gc.get_objects()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    frozen, tracked = int(out[-2]), int(out[-1])
    assert frozen > 100_000 and tracked < 1_000, (frozen, tracked)
    assert gc.isenabled()
