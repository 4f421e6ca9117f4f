"""From prompt pairs to batches: the loss covers the reply and EOS only, padding on the right."""

from __future__ import annotations

from typing import Any

import pytest

from trainers.batching import (
    IGNORE_INDEX,
    PromptPair,
    collator,
    padded_right,
    prompt_pairs,
    tokenize_pairs,
)
from trainers.prompt import ContextLoss, build_prompt, fit_prompt, reply_target

PAIRS = [
    PromptPair("Persona: I hike.\nA: Hi!\nB:", " I love hiking."),
    PromptPair("Persona: I bake bread every morning.\nA: What do you do?\nB:", " I bake."),
]


def test_labels_cover_the_reply_and_eos_only(tiny_base: Any) -> None:
    tokenizer = tiny_base.tokenizer
    tokens = tokenize_pairs(tokenizer, PAIRS, 256)
    for pair, row in zip(PAIRS, tokens.rows, strict=True):
        prompt_ids = tokenizer(pair.prompt)["input_ids"]
        reply_ids = tokenizer(pair.target, add_special_tokens=False)["input_ids"]
        assert row["input_ids"] == prompt_ids + reply_ids + [tokenizer.eos_token_id]
        assert row["labels"] == [IGNORE_INDEX] * len(prompt_ids) + reply_ids + [
            tokenizer.eos_token_id
        ]
    assert tokens.context_loss == ContextLoss(2, 0, 0, 256)


def test_long_prompts_lose_their_oldest_turns_not_the_persona(tiny_base: Any) -> None:
    tokenizer, limit = tiny_base.tokenizer, 48
    context = "\n".join(f"Turn number {i} of a long chat about hiking." for i in range(12))
    pairs = [PromptPair(build_prompt("I hike. I have a cat.", context), " I love hiking."), *PAIRS]
    tokens = tokenize_pairs(tokenizer, pairs, limit)
    row = tokens.rows[0]
    reply = [*tokenizer(pairs[0].target, add_special_tokens=False)["input_ids"]]
    assert len(row["input_ids"]) <= limit
    assert row["input_ids"][-len(reply) - 1 :] == [*reply, tokenizer.eos_token_id]
    prompt_ids = row["input_ids"][: -len(reply) - 1]
    assert prompt_ids == list(fit_prompt(tokenizer, pairs[0].prompt, limit - len(reply) - 1).ids)
    kept = tokenizer.decode(prompt_ids).split("\n")
    assert kept[0] == "Persona: I hike. I have a cat."
    assert kept[-2] == "A: Turn number 11 of a long chat about hiking."
    assert kept[-1] == "B:"
    assert tokens.context_loss == ContextLoss(3, 1, 0, limit)


def test_a_long_reply_keeps_half_the_length(tiny_base: Any) -> None:
    tokenizer = tiny_base.tokenizer
    long = PromptPair("Persona: I hike.\nA: Hi!\nB:", " I love hiking." * 30)
    (row,) = tokenize_pairs(tokenizer, [long], 40).rows
    assert len(row["input_ids"]) <= 40
    assert sum(label != IGNORE_INDEX for label in row["labels"]) == 40 // 2 + 1


@pytest.mark.parametrize("side", ["left", "right"])
def test_batches_pad_on_the_right_whatever_the_tokenizer_side(tiny_base: Any, side: str) -> None:
    import torch

    tokenizer = tiny_base.tokenizer
    rows = tokenize_pairs(tokenizer, PAIRS, 256).rows
    before = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        with padded_right(tokenizer):
            batch = collator(tokenizer)(rows)
        assert tokenizer.padding_side == side
    finally:
        tokenizer.padding_side = before
    lengths = [len(r["input_ids"]) for r in rows]
    width = max(lengths)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, width)
    for i, (row, n) in enumerate(zip(rows, lengths, strict=True)):
        pad = width - n
        assert batch["input_ids"][i].tolist() == row["input_ids"] + [tokenizer.pad_token_id] * pad
        assert batch["labels"][i].tolist() == row["labels"] + [IGNORE_INDEX] * pad
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * pad
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.int64


def test_prompt_pairs_take_one_split_capped_per_persona() -> None:
    from trainers.data import Example, Persona

    def example(i: int, split: str) -> Example:
        return Example(context=f"A: question {i}", reply=f"answer {i}", split=split)

    personas = [
        Persona(
            persona_id="p1",
            text="I hike.",
            examples=(example(0, "train"), example(1, "val"), example(2, "train")),
        ),
        Persona(persona_id="p2", text="I bake.", examples=(example(3, "train"),)),
    ]
    assert prompt_pairs(personas, "train", cap=1) == [
        PromptPair(build_prompt("I hike.", "A: question 0"), reply_target("answer 0")),
        PromptPair(build_prompt("I bake.", "A: question 3"), reply_target("answer 3")),
    ]
    assert len(prompt_pairs(personas, "train")) == 3
    assert prompt_pairs(personas, "test") == []
