"""Batched greedy generation: replies in input order, batch callbacks, adapters, cleaning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evaluators.generation import clean_reply, generate_replies
from trainers.prompt import build_prompt

PROMPTS = [
    build_prompt(
        "I love hiking. I have a dog.", "Hi!\nHello, how are you?\nWhat do you do on weekends?"
    ),
    build_prompt("I am a chef.", "What is your job?"),
    build_prompt(
        "I play the guitar in a band. I live in a big city. I drink coffee.",
        "Hey.\nHi there.\nDo you like music?\nYes, a lot.\nWhat do you play?",
    ),
    build_prompt("I have two cats.", ""),
    build_prompt("I study math at a university.", "Hello!\nHi.\nWhat are you studying?"),
]
"""Prompts of different lengths, so batches need left padding."""


def _state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_replies_follow_input_order_and_match_single_generation(tiny_base: Any) -> None:
    batched = generate_replies(tiny_base, PROMPTS, batch_size=3, max_new_tokens=12)
    assert len(batched) == len(PROMPTS)
    assert all(isinstance(r, str) and r for r in batched)
    singles = [
        generate_replies(tiny_base, [p], batch_size=1, max_new_tokens=12)[0] for p in PROMPTS
    ]
    assert batched == singles


def test_on_batch_sees_every_index_once(tiny_base: Any) -> None:
    seen: list[int] = []
    calls: list[tuple[list[int], list[str]]] = []

    def on_batch(indices: list[int], replies: list[str]) -> None:
        assert len(indices) == len(replies) <= 2
        seen.extend(indices)
        calls.append((list(indices), list(replies)))

    replies = generate_replies(
        tiny_base, PROMPTS, batch_size=2, max_new_tokens=6, on_batch=on_batch
    )
    assert sorted(seen) == list(range(len(PROMPTS)))
    assert len(calls) == 3
    for indices, batch_replies in calls:
        assert [replies[i] for i in indices] == batch_replies


def test_padding_side_is_restored(tiny_base: Any) -> None:
    tokenizer = tiny_base.tokenizer
    before = (tokenizer.padding_side, tokenizer.truncation_side)
    generate_replies(tiny_base, PROMPTS[:2], max_new_tokens=2)
    assert (tokenizer.padding_side, tokenizer.truncation_side) == before


def test_empty_prompt_list(tiny_base: Any) -> None:
    assert generate_replies(tiny_base, []) == []


@pytest.fixture(scope="module")
def zero_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised adapter (lora_B = 0) made on a separate copy of the tiny model."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from trainers.base_model import ensure_tiny_model
    from trainers.config import ModelConfig, TrainConfig
    from trainers.recipe import lora_config

    model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(ModelConfig()))
    out = tmp_path_factory.mktemp("zero-adapter") / "adapter"
    get_peft_model(model, lora_config(TrainConfig())).save_pretrained(str(out))
    return out


def test_adapter_is_applied_then_removed(tiny_base: Any, zero_adapter: Path) -> None:
    before = _state(tiny_base.model)
    plain = generate_replies(tiny_base, PROMPTS, max_new_tokens=8)
    with_adapter = generate_replies(tiny_base, PROMPTS, adapter_dir=zero_adapter, max_new_tokens=8)
    assert with_adapter == plain  # a zero lora_B does not change the model's output
    assert [n for n, _ in tiny_base.model.named_modules() if "lora_" in n] == []
    after = _state(tiny_base.model)
    assert set(after) == set(before)
    import torch

    assert all(torch.equal(after[k], before[k]) for k in before)


def test_missing_adapter_raises(tiny_base: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        generate_replies(tiny_base, PROMPTS[:1], adapter_dir=tmp_path)
    assert [n for n, _ in tiny_base.model.named_modules() if "lora_" in n] == []


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        (" Mostly hiking.\nA: And you?", "Mostly hiking."),
        ("  two   spaces\tand tab ", "two spaces and tab"),
        ("\nstarts with a newline\nsecond", "starts with a newline"),
        ("", ""),
        ("no newline", "no newline"),
    ],
)
def test_clean_reply_keeps_the_first_line(raw: str, cleaned: str) -> None:
    assert clean_reply(raw) == cleaned
