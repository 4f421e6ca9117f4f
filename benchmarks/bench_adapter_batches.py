"""Benchmark: many personas' adapters in one batch against persona by persona.

Per-persona and MoE evaluation answer each persona's test prompts with that persona's own
adapter. This runs both ways side by side, in one process, on the same model and prompts:

  A) persona by persona: :func:`evaluators.scoring.generation.generate_replies` once per
     persona with its ``adapter_dir`` (load, a batch of its 10 prompts, unload);
  B) mixed: one ``generate_replies`` call with ``row_adapters`` (every adapter loaded under
     its own name, rows of many personas in a batch of 32, peft's ``adapter_names``).

The prompts are the test examples of ``--personas`` personas of the demo dataset; each persona
gets a LoRA adapter of rank 8 on the attention projections: with ``--trained`` one trained on
its own training examples (one epoch, batch 4: replies like a real per-persona adapter's),
else one with random, small weights (every persona's replies differ; replies run longer). The
work is cut into ``--rounds`` interleaved rounds on other personas.

Run:  .venv/bin/python benchmarks/bench_adapter_batches.py [--personas 24] [--rounds 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluators.config import EvalConfig
from evaluators.scoring.generation import generate_replies
from trainers.base_model import BaseModel, load_base_model, set_threads
from trainers.config import ModelConfig
from trainers.data import SplitConfig, load_dataset
from trainers.prompt import build_prompt
from trainers.tiny import write_demo_dataset


def demo_personas(n_personas: int, seed: int = 0) -> list[Any]:
    """``n_personas`` personas of a demo dataset (of at least the generator's 10)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_demo_dataset(
            Path(tmp) / "bench.jsonl",
            n_personas=max(10, n_personas),
            examples_per_persona=40,
            seed=seed,
        )
        return list(load_dataset(path, split=SplitConfig()).dataset.personas[:n_personas])


def persona_prompts(n_personas: int, seed: int = 0) -> list[list[str]]:
    """Each persona's test prompts, for ``n_personas`` personas of a demo dataset."""
    return [
        [build_prompt(p.text, ex.context) for ex in p.examples if ex.split == "test"]
        for p in demo_personas(n_personas, seed)
    ]


def trained_adapters(base: BaseModel, personas: Sequence[Any], folder: Path) -> list[Path]:
    """One rank-8 adapter per persona, trained one epoch on its own training examples."""
    from trainers.batching import prompt_pairs
    from trainers.config import TrainConfig
    from trainers.recipe import train_lora

    config = TrainConfig(epochs=1, batch_size=4, evals_per_epoch=1)
    paths = []
    for i, persona in enumerate(personas):
        out = folder / f"persona{i}"
        train = prompt_pairs([persona], "train")
        train_lora(base, config, train, prompt_pairs([persona], "val"), save_dir=out)
        paths.append(out)
    return paths


def random_adapters(base: BaseModel, n: int, folder: Path, rank: int = 8) -> list[Path]:
    """``n`` LoRA adapters of ``base`` with random, small weights, saved under ``folder``."""
    import torch
    from peft import get_peft_model

    from trainers.config import TrainConfig
    from trainers.recipe import lora_config

    config = lora_config(TrainConfig(lora_rank=rank), base.model)
    config.init_lora_weights = False
    paths = []
    for i in range(n):
        torch.manual_seed(i)
        model = get_peft_model(base.model, config)
        with torch.no_grad():
            for name, weight in model.named_parameters():
                if "lora_B" in name:
                    weight.mul_(0.3)
        model.save_pretrained(str(folder / f"persona{i}"))
        base.model = model.unload()
        paths.append(folder / f"persona{i}")
    return paths


def by_persona(
    base: BaseModel, prompts: Sequence[Sequence[str]], adapters: Sequence[Path], config: EvalConfig
) -> list[str]:
    """Side A: one ``generate_replies`` call per persona, with its adapter."""
    return [
        reply
        for group, adapter in zip(prompts, adapters, strict=True)
        for reply in generate_replies(base, group, eval_config=config, adapter_dir=adapter)
    ]


def mixed(
    base: BaseModel, prompts: Sequence[Sequence[str]], adapters: Sequence[Path], config: EvalConfig
) -> list[str]:
    """Side B: one ``generate_replies`` call, each prompt with its persona's adapter."""
    flat = [p for group in prompts for p in group]
    owners: list[Path | None] = [
        a for group, a in zip(prompts, adapters, strict=True) for _ in group
    ]
    return generate_replies(base, flat, eval_config=config, row_adapters=owners)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--trained", action="store_true", help="train the adapters (1 epoch)")
    args = parser.parse_args()
    set_threads(args.threads)
    base = load_base_model(ModelConfig(device="cpu"))
    config = EvalConfig()
    personas = demo_personas(args.personas)
    prompts = [
        [build_prompt(p.text, ex.context) for ex in p.examples if ex.split == "test"]
        for p in personas
    ]
    seconds = {"persona by persona": 0.0, "mixed": 0.0}
    same = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.trained:
            adapters = trained_adapters(base, personas, Path(tmp))
        else:
            adapters = random_adapters(base, args.personas, Path(tmp))
        by_persona(base, prompts[:1], adapters[:1], config)  # warm-up, not timed
        for r in range(args.rounds):
            share = slice(r, None, args.rounds)
            replies: dict[str, Any] = {}
            sides = [("persona by persona", by_persona), ("mixed", mixed)]
            for name, side in sides if r % 2 == 0 else sides[::-1]:
                started = time.perf_counter()
                replies[name] = side(base, prompts[share], adapters[share], config)
                seconds[name] += time.perf_counter() - started
            same += sum(a == b for a, b in zip(*replies.values(), strict=True))
            total += len(replies["mixed"])
    kind = "trained" if args.trained else "random"
    print(
        f"{args.personas} personas x {len(prompts[0])} test prompts, {kind} adapters, "
        "tiny model on the CPU, "
        f"EvalConfig defaults (batch {config.batch_size}), torch threads {args.threads}, "
        f"{args.rounds} interleaved rounds"
    )
    print("| side | seconds | replies per second | ratio (speed) to persona by persona |")
    print("|---|---|---|---|")
    base_speed = total / seconds["persona by persona"]
    for name, spent in seconds.items():
        print(f"| {name} | {spent:.1f} | {total / spent:.1f} | {total / spent / base_speed:.2f}x |")
    print(f"identical replies, mixed vs persona by persona: {same}/{total}")


if __name__ == "__main__":
    main()
