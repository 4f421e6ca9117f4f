"""Benchmark: padding in training batches, before and after grouping by length, and packing.

The training rows of two datasets, tokenized as a trial tokenizes them (the tiny model's
tokenizer, ``max_seq_length`` 256): the demo dataset (200 personas x 40 examples, seed 0) and
Synthetic-Persona-Chat's validation split (tests/data/synthetic-persona-chat/, personas with
at least 12 examples). For each batch size of the search space (2, 4, 8) and two larger ones,
one epoch of the real Trainer's data loader (``Trainer.get_train_dataloader`` with the
recipe's arguments and collator: its sampler, its collation) is counted four ways:

- before: random batches padded to their longest row (``group_by_length=False``, as before);
- grouped: ``group_by_length=True`` (transformers' LengthGroupedSampler), the new default;
- grouped, x8: also ``pad_to_multiple_of=8``;
- packed: ``packing=True`` (DataCollatorWithFlattening: one row per batch, no padding).

The padding share is the share of computed tokens (batch rows x padded length, summed) that
are padding. ``--time`` then trains the tiny model side by side, one epoch of ``--rows`` demo
rows per way, in interleaved rounds, and prints seconds and the ratio to "before".

Run:  .venv/bin/python benchmarks/bench_padding.py [--batch-sizes 2 4 8 16 32] [--time]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainers.base_model import BaseModel, load_base_model, set_threads
from trainers.batching import PromptPair, collator, padded_right, padding_share, prompt_pairs
from trainers.config import DataConfig, ModelConfig, TrainConfig
from trainers.data import load_dataset
from trainers.tiny import write_demo_dataset

SPC_CSV = (
    Path(__file__).resolve().parents[1]
    / "tests/data/synthetic-persona-chat/Synthetic-Persona-Chat_valid.csv"
)
WAYS: dict[str, DataConfig] = {
    "before (random)": DataConfig(group_by_length=False),
    "grouped (default)": DataConfig(),
    "grouped, x8": DataConfig(pad_to_multiple_of=8),
    "packed": DataConfig(packing=True),
}


def demo_pairs() -> list[PromptPair]:
    """The demo dataset's training pairs (200 personas x 40 examples, seed 0)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_demo_dataset(Path(tmp) / "demo.jsonl", n_personas=200, examples_per_persona=40)
        return prompt_pairs(load_dataset(path).dataset.personas, "train")


def spc_pairs() -> list[PromptPair]:
    """Synthetic-Persona-Chat's validation split: the training pairs of its personas."""
    return prompt_pairs(load_dataset(SPC_CSV, min_examples=12).dataset.personas, "train")


def epoch_batches(base: BaseModel, rows: list[dict[str, Any]], config: TrainConfig) -> list[Any]:
    """One epoch of batches from the real Trainer's data loader, as a trial builds it."""
    from trainers.batching import seeded_trainer
    from trainers.recipe import training_arguments

    with tempfile.TemporaryDirectory() as scratch, padded_right(base.tokenizer):
        trainer = seeded_trainer()(
            model=base.model,
            args=training_arguments(config, scratch, 1, base.device, progress=False),
            train_dataset=rows,  # type: ignore[arg-type]
            eval_dataset=rows[:1],  # type: ignore[arg-type]
            data_collator=collator(base.tokenizer, config.data),
        )
        return list(trainer.get_train_dataloader())


def print_padding(
    base: BaseModel, name: str, pairs: Sequence[PromptPair], sizes: Sequence[int]
) -> None:
    from trainers.batching import tokenize_pairs

    rows = tokenize_pairs(base.tokenizer, pairs, DataConfig().max_seq_length, chat=base.chat).rows
    lengths = [len(r["input_ids"]) for r in rows]
    print(
        f"\n{name}: {len(rows)} training rows, {sum(lengths) / len(lengths):.1f} tokens a row "
        f"on average ({min(lengths)} to {max(lengths)})"
    )
    print("| batch | " + " | ".join(WAYS) + " |")
    print("|---" * (len(WAYS) + 1) + "|")
    for size in sizes:
        shares = []
        for data in WAYS.values():
            config = TrainConfig(batch_size=size, data=data)
            shares.append(padding_share(epoch_batches(base, rows, config)))
        print(f"| {size} | " + " | ".join(f"{100 * s:.2f}%" for s in shares) + " |")


def print_timing(base: BaseModel, pairs: Sequence[PromptPair], rows: int, rounds: int) -> None:
    """Train one epoch of ``rows`` pairs each way, interleaved, and print the seconds."""
    from trainers.recipe import train_lora

    train, val = list(pairs[:rows]), list(pairs[rows : rows + 8])
    seconds = dict.fromkeys(WAYS, 0.0)
    for r in range(rounds):
        for name in WAYS if r % 2 == 0 else list(WAYS)[::-1]:
            config = TrainConfig(epochs=1, batch_size=8, evals_per_epoch=1, data=WAYS[name])
            started = time.perf_counter()
            train_lora(base, dataclasses.replace(config, seed=r), train, val, final_eval_only=True)
            seconds[name] += time.perf_counter() - started
    print(f"\ntraining the tiny model on the CPU: {rows} demo rows, batch 8, {rounds} rounds")
    print("| way | seconds | ratio to before |")
    print("|---|---|---|")
    for name, total in seconds.items():
        print(f"| {name} | {total:.1f} | {total / seconds['before (random)']:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--time", action="store_true", help="then train side by side")
    parser.add_argument("--rows", type=int, default=480, help="demo rows per timed epoch")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    set_threads(args.threads)
    base = load_base_model(ModelConfig(device="cpu"))
    demo = demo_pairs()
    print_padding(base, "demo dataset", demo, args.batch_sizes)
    print_padding(base, "Synthetic-Persona-Chat (validation split)", spc_pairs(), args.batch_sizes)
    if args.time:
        print_timing(base, demo, args.rows, args.rounds)


if __name__ == "__main__":
    main()
