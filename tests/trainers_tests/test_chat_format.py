"""Chat-format prompts: the tokenizer's chat template, in training and evaluation alike."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.trainers_tests.conftest import SaveModel
from trainers.base_model import load_base_model
from trainers.batching import PromptPair, tokenize_pairs
from trainers.config import ModelConfig, TrainConfig
from trainers.prompt import build_prompt, chat_messages, chat_prompt, fit_prompt

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""A ChatML template, as Qwen's instruct models have (with plain-text markers here)."""

PROMPT = build_prompt("I hike. I have two dogs.", "Hi!\nHello, who are you?\nI am Ann. And you?")


@pytest.fixture(scope="module")
def chat_model(random_model: SaveModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Qwen2 whose tokenizer has a chat template."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("chat") / "qwen2-chat"
    shutil.copytree(random_model("qwen2"), folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    return folder


def test_messages_put_the_persona_first_and_alternate() -> None:
    assert chat_messages(PROMPT) == [
        {"role": "system", "content": "You are this person: I hike. I have two dogs."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello, who are you?"},
        {"role": "user", "content": "I am Ann. And you?"},
    ]
    no_system = chat_messages(PROMPT, system=False)
    assert no_system[0]["role"] == "user" and no_system[0]["content"].endswith("\n\nHi!")


def test_training_rows_use_the_template(chat_model: Path) -> None:
    base = load_base_model(ModelConfig(base_model=str(chat_model), prompt_format="chat"))
    text = chat_prompt(base.tokenizer, PROMPT)
    assert text.startswith("<|im_start|>system\nYou are this person: I hike.")
    assert text.endswith("<|im_start|>user\nI am Ann. And you?<|im_end|>\n<|im_start|>assistant\n")
    rows = tokenize_pairs(base.tokenizer, [PromptPair(PROMPT, " Bob.")], 256, chat=True).rows
    reply = base.tokenizer("Bob.", add_special_tokens=False)["input_ids"]
    assert rows[0]["input_ids"][-len(reply) - 1 :] == [*reply, base.tokenizer.eos_token_id]
    prompt_ids = base.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert rows[0]["input_ids"][: len(prompt_ids)] == prompt_ids


def test_a_long_chat_drops_the_oldest_turns(chat_model: Path) -> None:
    base = load_base_model(ModelConfig(base_model=str(chat_model), prompt_format="chat"))
    whole = fit_prompt(base.tokenizer, PROMPT, 10_000, chat=True)
    fitted = fit_prompt(base.tokenizer, PROMPT, len(whole.ids) - 1, chat=True)
    assert whole.dropped_turns == 0 and fitted.dropped_turns >= 1
    assert "You are this person: I hike." in fitted.text and "I am Ann" in fitted.text
    assert "Hi!" not in fitted.text


def test_chat_trains_and_replies(chat_model: Path, tmp_path: Path) -> None:
    from evaluators.config import EvalConfig
    from evaluators.scoring.generation import generate_replies
    from trainers.recipe import train_lora

    base = load_base_model(ModelConfig(base_model=str(chat_model), prompt_format="chat"))
    pairs = [PromptPair(PROMPT, " I am Bob.")] * 4
    config = TrainConfig(epochs=1, batch_size=2)
    result = train_lora(base, config, pairs, pairs[:2], save_dir=tmp_path / "a")
    assert result.eval_losses
    replies = generate_replies(
        base, [PROMPT], eval_config=EvalConfig(max_new_tokens=3), adapter_dir=tmp_path / "a"
    )
    assert len(replies) == 1


def test_chat_needs_a_chat_template(random_model: SaveModel) -> None:
    with pytest.raises(ValueError, match=r"model\.prompt_format='chat' but the tokenizer of"):
        load_base_model(ModelConfig(base_model=str(random_model("qwen2")), prompt_format="chat"))
