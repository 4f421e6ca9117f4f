"""Random-init causal LMs of real architectures, saved with the tiny model's tokenizer.

The architecture tests train a LoRA on each, and the GPU benchmark builds a few-hundred-million
parameter one: every model here is a stock transformers config class, given a size, with the
vocabulary and special tokens of the tokenizer it is saved with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _dense(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 2),
        "max_position_embeddings": 512,
    }


def _qwen2(hidden: int, layers: int, heads: int) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(**_dense(hidden, layers, heads), tie_word_embeddings=True)


def _llama(hidden: int, layers: int, heads: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**_dense(hidden, layers, heads))


def _phi3(hidden: int, layers: int, heads: int) -> Any:
    from transformers import Phi3Config

    return Phi3Config(**_dense(hidden, layers, heads))


def _gpt2(hidden: int, layers: int, heads: int) -> Any:
    from transformers import GPT2Config

    return GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=512)


def _falcon(hidden: int, layers: int, heads: int) -> Any:
    from transformers import FalconConfig

    return FalconConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads)


def _mixtral(hidden: int, layers: int, heads: int) -> Any:
    from transformers import MixtralConfig

    dense = _dense(hidden, layers, heads)
    return MixtralConfig(**dense, num_local_experts=4, num_experts_per_tok=2)


def _qwen2_moe(hidden: int, layers: int, heads: int) -> Any:
    from transformers import Qwen2MoeConfig

    return Qwen2MoeConfig(
        **_dense(hidden, layers, heads),
        moe_intermediate_size=hidden,
        shared_expert_intermediate_size=hidden,
        num_experts=4,
        num_experts_per_tok=2,
    )


def _olmoe(hidden: int, layers: int, heads: int) -> Any:
    from transformers import OlmoeConfig

    return OlmoeConfig(**_dense(hidden, layers, heads), num_experts=4, num_experts_per_tok=2)


def _t5(hidden: int, layers: int, heads: int) -> Any:
    from transformers import T5Config

    return T5Config(d_model=hidden, d_ff=2 * hidden, num_layers=layers, num_heads=heads)


def _bert(hidden: int, layers: int, heads: int) -> Any:
    from transformers import BertConfig

    return BertConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
    )


ARCHITECTURES: dict[str, Callable[[int, int, int], Any]] = {
    "qwen2": _qwen2,
    "llama": _llama,
    "phi3": _phi3,
    "gpt2": _gpt2,
    "falcon": _falcon,
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
    "olmoe": _olmoe,
    "t5": _t5,
    "bert": _bert,
}
"""Config builders by model type: (hidden size, layers, attention heads) -> config."""


def save_random_model(
    architecture: str,
    out: Path,
    tokenizer: Any,
    *,
    hidden: int = 32,
    layers: int = 1,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """Save a random-init model of ``architecture`` with ``tokenizer`` into ``out``.

    Causal LMs are saved with their ``AutoModelForCausalLM`` class; T5 and BERT (which a
    base-model check must refuse) with their own pretraining heads.

    Raises:
        ValueError: If the architecture is not one of :data:`ARCHITECTURES`.
    """
    import torch
    from transformers import AutoModelForCausalLM, BertForMaskedLM, T5ForConditionalGeneration

    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}: expected one of {sorted(ARCHITECTURES)}"
        )
    config = ARCHITECTURES[architecture](hidden, layers, heads)
    config.vocab_size = len(tokenizer)
    for name in ("bos", "eos", "pad"):
        setattr(config, f"{name}_token_id", getattr(tokenizer, f"{name}_token_id"))
    torch.manual_seed(seed)
    if architecture == "t5":
        config.decoder_start_token_id = tokenizer.pad_token_id
        model: Any = T5ForConditionalGeneration(config)
    elif architecture == "bert":
        model = BertForMaskedLM(config)
    else:
        model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)
