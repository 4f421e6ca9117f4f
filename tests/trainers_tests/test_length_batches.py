"""Full training steps: batches grouped by length (every example once an epoch, the same
batches for the same seed), padded to a multiple when asked, or packed without padding (the
same rows per batch and the same losses as padded batches), as the real model sees them."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from trainers.batching import PromptPair, check_packing, padding_share
from trainers.config import DataConfig, TrainConfig
from trainers.prompt import build_prompt

PAIRS = [
    PromptPair(
        build_prompt(f"I have {n} dogs.", "Hi there, how are you? " * ((n * 7) % 32 // 3)),
        f" I walk {n} dogs.",
    )
    for n in range(32)
]
"""Rows of 20 to about 80 tokens, their lengths in an order unrelated to their place."""
VAL = PAIRS[:4]
GROUPED = TrainConfig(epochs=2, batch_size=2, evals_per_epoch=1, lora_dropout=0.0)

Row = tuple[int, ...]


@contextmanager
def training_batches(base: Any) -> Iterator[list[dict[str, Any]]]:
    """The training batches the model's decoder receives in the block (evaluation left out)."""
    seen: list[dict[str, Any]] = []

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if module.training:
            seen.append(
                {
                    k: kwargs[k].detach().clone()
                    for k in ("input_ids", "attention_mask", "position_ids")
                    if kwargs.get(k) is not None
                }
            )

    handle = base.model.base_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def _rows(batch: dict[str, Any]) -> list[Row]:
    """The real tokens of each row of a padded or a packed batch."""
    ids = batch["input_ids"]
    if "attention_mask" in batch:
        masks = batch["attention_mask"]
        return [tuple(r[m.bool()].tolist()) for r, m in zip(ids, masks, strict=True)]
    starts = [*(batch["position_ids"][0] == 0).nonzero().flatten().tolist(), ids.shape[1]]
    return [tuple(ids[0, a:b].tolist()) for a, b in itertools.pairwise(starts)]


def _train(base: Any, config: TrainConfig) -> tuple[list[dict[str, Any]], Any]:
    from trainers.recipe import train_lora

    with training_batches(base) as seen:
        result = train_lora(base, config, PAIRS, VAL)
    return seen, result


def _with(config: TrainConfig, **data: Any) -> TrainConfig:
    return dataclasses.replace(config, data=dataclasses.replace(config.data, **data))


def test_grouped_batches_keep_every_example_once_an_epoch_and_repeat_by_seed(
    tiny_base: Any,
) -> None:
    from trainers.batching import tokenize_pairs

    everyone = sorted(
        tuple(r["input_ids"]) for r in tokenize_pairs(tiny_base.tokenizer, PAIRS, 256).rows
    )
    grouped, _ = _train(tiny_base, GROUPED)
    per_epoch = len(PAIRS) // GROUPED.batch_size
    assert len(grouped) == 2 * per_epoch
    for epoch in range(2):
        rows = [r for b in grouped[epoch * per_epoch : (epoch + 1) * per_epoch] for r in _rows(b)]
        assert sorted(rows) == everyone
    assert [_rows(b) for b in grouped[:per_epoch]] != [_rows(b) for b in grouped[per_epoch:]]

    again, _ = _train(tiny_base, GROUPED)
    assert [_rows(b) for b in again] == [_rows(b) for b in grouped]
    one_epoch = dataclasses.replace(GROUPED, epochs=1)
    other_seed, _ = _train(tiny_base, dataclasses.replace(one_epoch, seed=1))
    assert [_rows(b) for b in other_seed] != [_rows(b) for b in grouped[:per_epoch]]

    random_order, _ = _train(tiny_base, _with(one_epoch, group_by_length=False))
    assert sorted(r for b in random_order for r in _rows(b)) == everyone
    # 32 rows make megabatches of 8 rows: about 6% against 20% (thousands: under 1%)
    assert padding_share(grouped) < padding_share(random_order) / 2


def test_batches_padded_to_a_multiple_of_eight(tiny_base: Any) -> None:
    config = _with(dataclasses.replace(GROUPED, epochs=1), pad_to_multiple_of=8)
    seen, _ = _train(tiny_base, config)
    assert seen and all(b["input_ids"].shape[1] % 8 == 0 for b in seen)
    assert any(b["attention_mask"].sum() < b["attention_mask"].numel() for b in seen)


def test_packed_batches_hold_the_padded_batches_rows_with_the_same_losses(tiny_base: Any) -> None:
    one_epoch = dataclasses.replace(GROUPED, epochs=1)
    padded, padded_result = _train(tiny_base, one_epoch)
    packed, packed_result = _train(tiny_base, _with(one_epoch, packing=True))
    assert all(b["input_ids"].shape[0] == 1 and "attention_mask" not in b for b in packed)
    assert [_rows(b) for b in packed] == [_rows(b) for b in padded]
    assert padding_share(packed) == 0.0 < padding_share(padded)
    assert packed_result.final_eval_loss == pytest.approx(padded_result.final_eval_loss, rel=1e-4)


def test_packing_is_refused_where_rows_would_mix() -> None:
    import torch
    from transformers import AutoModelForCausalLM, MambaConfig

    torch.manual_seed(0)
    mamba = AutoModelForCausalLM.from_config(
        MambaConfig(vocab_size=64, hidden_size=16, state_size=4, num_hidden_layers=1)
    )
    with pytest.raises(ValueError, match=r"invalid data\.packing=True: mamba .* mixes the packed"):
        check_packing(mamba)
    with pytest.raises(ValueError, match=r"invalid data\.pad_to_multiple_of=8"):
        DataConfig(packing=True, pad_to_multiple_of=8)
    with pytest.raises(ValueError, match=r"invalid data\.pad_to_multiple_of=0"):
        DataConfig(pad_to_multiple_of=0)
