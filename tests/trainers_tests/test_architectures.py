"""Any causal LM: each architecture trains a LoRA with default settings and replies, the
exact ``cat`` merge holds inside the model, and encoder models are refused.

Random-init models (hidden 32, one layer) with the tiny model's tokenizer; peft has default
targets for Qwen2, GPT-2, Falcon and Mixtral, and none for Phi-3, Qwen2-MoE and OLMoE, whose
targets are the attention projections found by module type.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from tests.trainers_tests.conftest import SaveModel
from trainers.base_model import load_base_model
from trainers.batching import PromptPair
from trainers.config import ModelConfig, TrainConfig
from trainers.recipe import train_lora
from trainers.targets import MOE_PART

PAIRS = [
    PromptPair(f"Persona: I hike. I have {n} dogs.\nA: Hi, how are you?\nB:", f" I walk {n} dogs.")
    for n in range(8)
]
SHORT = TrainConfig(epochs=1, batch_size=4, evals_per_epoch=1)
EXPECTED_TARGETS = {
    "qwen2": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "falcon": ["query_key_value"],
    "phi3": ["o_proj", "qkv_proj"],
    "mixtral": ["q_proj", "v_proj"],
    "qwen2_moe": ["k_proj", "o_proj", "q_proj", "v_proj"],
    "olmoe": ["k_proj", "o_proj", "q_proj", "v_proj"],
}


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(EXPECTED_TARGETS))
def test_trains_with_defaults_and_replies(
    random_model: SaveModel, architecture: str, tmp_path: Path
) -> None:
    from evaluators.config import EvalConfig
    from evaluators.scoring.generation import generate_replies

    base = load_base_model(ModelConfig(base_model=str(random_model(architecture))))
    targets = _trained_targets(base, SHORT, tmp_path / "adapter")
    assert targets == EXPECTED_TARGETS[architecture]

    replies = generate_replies(
        base,
        [p.prompt for p in PAIRS[:3]],
        eval_config=EvalConfig(max_new_tokens=4, batch_size=3),
        adapter_dir=tmp_path / "adapter",
    )
    assert len(replies) == 3 and all(isinstance(r, str) for r in replies)


LINEAR_TARGETS = {
    "llama": ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
    # the shared expert's MLP is adapted; the experts, the router (mlp.gate) and the shared
    # expert's gate are not
    "qwen2_moe": ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
}


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(LINEAR_TARGETS))
def test_the_linear_preset_adapts_every_projection_but_the_moe_parts(
    random_model: SaveModel, architecture: str, tmp_path: Path
) -> None:
    base = load_base_model(ModelConfig(base_model=str(random_model(architecture))))
    config = dataclasses.replace(SHORT, lora_targets="linear")
    assert _trained_targets(base, config, tmp_path / "adapter") == LINEAR_TARGETS[architecture]
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    adapted = {key.split(".lora_")[0] for key in weights}
    assert adapted and not [name for name in adapted if MOE_PART.search(name)]


def _trained_targets(base: Any, config: TrainConfig, out: Path) -> list[str]:
    """Train a LoRA into ``out``; the modules its ``adapter_config.json`` names, sorted. The
    base model must come back unchanged."""
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    result = train_lora(base, config, PAIRS, PAIRS[:2], save_dir=out)
    assert result.train_steps == 2 and result.eval_losses
    after = base.model.state_dict()
    assert after.keys() == before.keys()  # the LoRA layers are gone again
    assert all(after[k].equal(before[k]) for k in before)
    return sorted(json.loads((out / "adapter_config.json").read_text())["target_modules"])


def _train(base: Any, seed: int, out: Path) -> Path:
    config = TrainConfig(
        epochs=2, batch_size=2, learning_rate=0.02, lora_dropout=0.0, seed=seed, lora_rank=2
    )
    train_lora(base, config, PAIRS[seed % 2 :: 2] * 2, PAIRS[:2], save_dir=out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["phi3", "qwen2_moe"])
def test_cat_merge_is_exact_inside_the_model(
    random_model: SaveModel, architecture: str, tmp_path: Path
) -> None:
    """The merged adapter's outputs equal those of the base with the dense weighted sum of
    the trained adapters' deltas added to its weights."""
    import torch
    from peft import PeftModel

    from evaluators.moe.merge import CatMerge, read_adapter, weighted_delta_sum

    base = load_base_model(ModelConfig(base_model=str(random_model(architecture))))
    sources = [_train(base, seed, tmp_path / f"s{seed}") for seed in (1, 2)]
    weights = [0.7, 0.3]
    merged = CatMerge().merge(sources, weights, tmp_path / "merged")
    reference = weighted_delta_sum([read_adapter(s) for s in sources], weights)

    ids = torch.randint(3, len(base.tokenizer), (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unchanged = base.model(input_ids=ids).logits
        dense = copy.deepcopy(base.model)
        modules = dict(dense.named_modules())
        for key, delta in reference.items():
            modules[key.removeprefix("base_model.model.")].weight += delta
        expected = dense(input_ids=ids).logits
        peft_model = PeftModel.from_pretrained(base.model, str(merged))
        try:
            got = peft_model(input_ids=ids).logits
        finally:
            base.model = peft_model.unload()
    assert (expected - unchanged).abs().max() > 1e-4, "the trained deltas must change outputs"
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("architecture", ["t5", "bert"])
def test_encoder_models_are_refused_before_training(
    random_model: SaveModel, architecture: str
) -> None:
    from trainers.model_check import check_base_model

    with pytest.raises(ValueError, match=r"^model\.base_model=.*expected a decoder-only causal"):
        check_base_model(ModelConfig(base_model=str(random_model(architecture))))
