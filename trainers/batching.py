"""From personas to training batches: prompt/reply pairs, token rows, and padded batches.

The loss covers the reply and its EOS token only; the prompt's labels are ``-100``. Batches
are padded by transformers' ``DataCollatorForSeq2Seq``, which pads ``input_ids`` and
``attention_mask`` with the tokenizer and ``labels`` with ``-100``: its name says seq2seq, but
for rows that already carry their labels it is exactly the causal-LM padding we need (the
causal-LM collator, ``DataCollatorForLanguageModeling``, would copy ``input_ids`` into
``labels`` and train on the prompt too).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from trainers.prompt import ContextLoss, build_prompt, fit_prompt, reply_target

IGNORE_INDEX = -100
"""The label of a token the loss skips (PyTorch's cross-entropy default)."""


@dataclass(frozen=True)
class PromptPair:
    """One training example: the prompt and the reply the model should learn."""

    prompt: str
    target: str


def prompt_pairs(personas: Sequence[Any], split: str, cap: int | None = None) -> list[PromptPair]:
    """Build prompt/target pairs from personas' examples of one split.

    Args:
        personas: Objects with ``text`` and ``examples`` (each with ``context``, ``reply``,
            ``split``), as loaded by :mod:`trainers.data` or from storage.
        split: ``"train"``, ``"val"`` or ``"test"``.
        cap: At most this many examples per persona (the first ones, in file order).
    """
    pairs = []
    for persona in personas:
        chosen = [ex for ex in persona.examples if ex.split == split]
        for ex in chosen[:cap] if cap else chosen:
            pairs.append(PromptPair(build_prompt(persona.text, ex.context), reply_target(ex.reply)))
    return pairs


@dataclass(frozen=True)
class TokenRows:
    """Token rows of prompt/target pairs, and how many prompts lost context to the limit."""

    rows: list[dict[str, list[int]]]
    """One row per pair: ``input_ids`` and ``labels``."""
    context_loss: ContextLoss
    """The pairs whose prompt lost context turns (or part of the persona) to fit."""


def tokenize_pairs(
    tokenizer: Any, pairs: Sequence[PromptPair], max_length: int, *, chat: bool = False
) -> TokenRows:
    """Tokenize pairs for causal-LM training: the loss covers the reply and EOS only.

    The reply keeps at most half of ``max_length``; the prompt is fitted into the rest by
    :func:`trainers.prompt.fit_prompt` (the persona stays whole, the oldest turns go first),
    as generation fits it. With ``chat``, the prompt is rendered with the tokenizer's chat
    template and the reply follows the generation prompt without its leading space.
    """
    fitted = []
    rows = []
    for pair in pairs:
        target = pair.target.lstrip() if chat else pair.target
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        target_ids = [*target_ids[: max_length // 2], tokenizer.eos_token_id]
        prompt = fit_prompt(tokenizer, pair.prompt, max_length - len(target_ids), chat=chat)
        fitted.append(prompt)
        rows.append(
            {
                "input_ids": [*prompt.ids, *target_ids],
                "labels": [IGNORE_INDEX] * len(prompt.ids) + target_ids,
            }
        )
    return TokenRows(rows, ContextLoss.of(fitted, max_length))


def collator(tokenizer: Any) -> Any:
    """The batch collator for rows from :func:`tokenize_pairs` (see the module docstring).

    It pads on the tokenizer's ``padding_side``; train inside :func:`padded_right`.
    """
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX)


@contextmanager
def padded_right(tokenizer: Any) -> Iterator[None]:
    """Pad on the right for the block, then restore the tokenizer's padding side.

    Left padding would shift the positions of a short row's tokens, which training must not
    do; generation pads on the left for its own reason and sets that itself.
    """
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        yield
    finally:
        tokenizer.padding_side = side
