"""From personas to training batches: prompt/reply pairs, token rows, and padded batches.

The loss covers the reply and its EOS token only; the prompt's labels are ``-100``. Batches
are padded by transformers' ``DataCollatorForSeq2Seq``, which pads ``input_ids`` and
``attention_mask`` with the tokenizer and ``labels`` with ``-100``: its name says seq2seq, but
for rows that already carry their labels it is exactly the causal-LM padding we need (the
causal-LM collator, ``DataCollatorForLanguageModeling``, would copy ``input_ids`` into
``labels`` and train on the prompt too).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from trainers.config import DataConfig
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


def collator(tokenizer: Any, data: DataConfig | None = None) -> Any:
    """The batch collator for rows from :func:`tokenize_pairs` (see the module docstring).

    It pads on the tokenizer's ``padding_side`` (train inside :func:`padded_right`) up to a
    multiple of ``data.pad_to_multiple_of``. With ``data.packing`` it pads nothing: a batch is
    one row of the rows joined, with ``position_ids`` that restart at every row
    (transformers' ``DataCollatorWithFlattening``; the first label of each row, a prompt
    token's, is the ignored separator). Check the model first with :func:`check_packing`.
    """
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    data = data or DataConfig()
    if data.packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    multiple = data.pad_to_multiple_of if data.pad_to_multiple_of > 1 else None
    return DataCollatorForSeq2Seq(
        tokenizer, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=multiple
    )


def padding_share(batches: Iterable[Mapping[str, Any]]) -> float:
    """The share of the computed tokens that are padding, over collated batches.

    A padded batch computes every position of ``input_ids``, of which its ``attention_mask``
    marks the real tokens; a packed batch (no attention mask) computes real tokens only.
    """
    computed = real = 0
    for batch in batches:
        computed += int(batch["input_ids"].numel())
        mask = batch.get("attention_mask")
        real += int(batch["input_ids"].numel() if mask is None else mask.sum())
    return 0.0 if computed == 0 else 1 - real / computed


def check_packing(model: Any) -> None:
    """Refuse packing where the model's attention would let the joined rows see each other.

    Two short rows are run apart and packed (one sequence, ``position_ids`` restarting at the
    second row, no attention mask); packing is right when the second row's logits are the
    same both ways. transformers 5 separates the rows from ``position_ids`` in its
    flash-attention kernels and in the masks it builds for sdpa, eager and flex attention;
    a model that builds its own mask (custom code) may not.

    Raises:
        ValueError: If the packed row's logits differ, naming the model type and attention.
    """
    import torch

    device = next(model.parameters()).device
    first = torch.tensor([[5, 6, 7, 8, 9, 10]], device=device)
    second = torch.tensor([[11, 12, 13, 14]], device=device)
    packed = torch.cat([first, second], dim=1)
    positions = torch.cat([torch.arange(6), torch.arange(4)]).unsqueeze(0).to(device)
    with torch.no_grad():
        alone = model(input_ids=second, use_cache=False).logits[0].float()
        joined = model(input_ids=packed, position_ids=positions, use_cache=False).logits
    together = joined[0, 6:].float()
    scale = float(alone.abs().max()) or 1.0
    if not torch.allclose(alone, together, rtol=0.0, atol=0.02 * scale):
        attention = getattr(model.config, "_attn_implementation", None)
        raise ValueError(
            f"invalid data.packing=True: {model.config.model_type} with {attention} attention "
            "mixes the packed rows (logits differ from the rows alone); expected "
            "data.packing=False, or an attention that separates rows by position_ids "
            "(sdpa, eager or flash_attention_2 in transformers 5)"
        )


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


@functools.cache
def seeded_trainer() -> type:
    """transformers' ``Trainer`` whose length-grouped training sampler has a generator of its
    own, seeded by ``data_seed``.

    transformers builds the training ``LengthGroupedSampler`` without a generator (its
    evaluation sampler gets a seeded one, and accelerate seeds only a plain random sampler), so
    each epoch's order would come from torch's global generator, which every evaluation's data
    loader also draws from: the same config would train other batches depending on how often
    it was evaluated, and a final-evaluation-only run would not train the adapter a reported
    run trains.
    """
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class SeededTrainer(Trainer):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler) and sampler.generator is None:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                sampler.generator = torch.Generator().manual_seed(seed)
            return sampler

    return SeededTrainer
