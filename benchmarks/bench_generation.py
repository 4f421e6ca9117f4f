"""Benchmark: batched evaluation against a one-example-at-a-time generation loop.

The original plan generated its 720 test replies one prompt per ``generate`` call and took
an hour. This runs, side by side in one process, on the same model and the same prompts:
  A) the batched evaluation, :func:`evaluators.scoring.generation.generate_replies` with the
     :class:`~evaluators.config.EvalConfig` defaults (and once more with ``--big-batch``);
  B) a loop that calls ``generate`` once per prompt with the very same GenerationConfig
     (greedy, same lengths, stop at the newline token): the effect of batching alone;
  C) the original plan's loop: once per prompt, no stop at the newline (only at EOS or
     ``max_new_tokens``), on every ``--plan-every``-th prompt only and extrapolated.
The prompts are the test examples of the demo dataset's largest archetype (72 personas x 10
= 720, the size of the original plan's cluster 4), made by the project's own generator.
The work is cut into ``--rounds`` interleaved rounds (every round runs A, B and C on its own
share of the prompts, alternating which goes first), so a load change on the machine hits
all sides alike.

``--breakdown`` then runs each side once more on one round's share with hooks on the model's
forward, and prints where the time goes: prefill, decoding steps (forward passes of one new
token per row), and everything outside the forward (``generate``'s own per-step work,
tokenizing, decoding text); the row-steps column counts rows times steps, so a batch that
waits for its longest reply shows more row-steps than the loop. The hooks cost a little time
on every forward pass, so these timings are not used for the ratios.

Run:  .venv/bin/python benchmarks/bench_generation.py [--threads 1] [--rounds 4] [--breakdown]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluators.config import EvalConfig
from evaluators.scoring.generation import clean_reply, generate_replies, generation_config
from trainers.base_model import BaseModel, load_base_model, set_threads
from trainers.config import ModelConfig
from trainers.data import SplitConfig, load_dataset
from trainers.prompt import build_prompt
from trainers.tiny import persona_archetypes, write_demo_dataset

ARCHETYPE = "fitness"
"""The demo's largest archetype: 72 of 200 personas, like the original plan's cluster 4."""


@dataclass
class Side:
    """One way of generating, with its accumulated time."""

    name: str
    run: Callable[[Sequence[str]], list[str]]
    every: int = 1
    seconds: float = 0.0
    prompts: int = 0
    replies: dict[str, str] = field(default_factory=dict)


def cluster_prompts(n_personas: int, examples: int, seed: int) -> list[str]:
    """The test prompts of the largest archetype's personas in a generated demo dataset."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_demo_dataset(
            Path(tmp) / "bench.jsonl",
            n_personas=n_personas,
            examples_per_persona=examples,
            seed=seed,
        )
        dataset = load_dataset(path, split=SplitConfig()).dataset
    kinds = persona_archetypes(n_personas, seed=seed)
    return [
        build_prompt(persona.text, ex.context)
        for persona, kind in zip(dataset.personas, kinds, strict=True)
        if kind == ARCHETYPE
        for ex in persona.examples
        if ex.split == "test"
    ]


def one_at_a_time(base: BaseModel, settings: Any, max_prompt_tokens: int) -> Callable[..., Any]:
    """A loop with one ``generate`` call per prompt (left truncation as in the evaluation)."""
    import torch

    tokenizer = base.tokenizer

    def run(prompts: Sequence[str]) -> list[str]:
        tokenizer.truncation_side = "left"
        replies = []
        with torch.inference_mode():
            for prompt in prompts:
                enc = tokenizer(
                    prompt, return_tensors="pt", truncation=True, max_length=max_prompt_tokens
                ).to(base.device)
                out = base.model.generate(**enc, generation_config=settings)
                text = tokenizer.decode(
                    out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True
                )
                replies.append(clean_reply(text))
        return replies

    return run


@dataclass
class Forwards:
    """Forward passes of the model seen by hooks: prefill passes and one-token decoding steps."""

    prefill_calls: int = 0
    prefill_seconds: float = 0.0
    steps: int = 0
    row_steps: int = 0
    step_seconds: float = 0.0


@contextmanager
def counted_forwards(model: Any) -> Iterator[Forwards]:
    """Count and time the model's forward passes inside the block."""
    seen = Forwards()
    started: list[float] = []

    def before(_: Any, args: Any, kwargs: dict[str, Any]) -> None:
        started.append(time.perf_counter())

    def after(_: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        seconds = time.perf_counter() - started.pop()
        rows, length = kwargs["input_ids"].shape
        if length == 1:
            seen.steps += 1
            seen.row_steps += rows
            seen.step_seconds += seconds
        else:
            seen.prefill_calls += 1
            seen.prefill_seconds += seconds

    handles = [
        model.register_forward_pre_hook(before, with_kwargs=True),
        model.register_forward_hook(after, with_kwargs=True),
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def print_breakdown(base: BaseModel, sides: Sequence[Side], prompts: Sequence[str]) -> None:
    """Run every side once on ``prompts`` with counted forwards, and print where time goes."""
    print(f"\nbreakdown on {len(prompts)} prompts (hooks on the forward pass; not used above)")
    print(
        "| side | generate calls | decoding steps | row-steps per prompt | prefill per prompt "
        "| decoding per prompt | per step | outside the forward per prompt | total per prompt |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for side in sides:
        chosen = prompts[:: side.every]
        with counted_forwards(base.model) as seen:
            started = time.perf_counter()
            side.run(chosen)
            total = time.perf_counter() - started
        n = len(chosen)
        outside = total - seen.prefill_seconds - seen.step_seconds
        print(
            f"| {side.name} | {seen.prefill_calls} | {seen.steps} | {seen.row_steps / n:.1f} | "
            f"{1000 * seen.prefill_seconds / n:.2f} ms | {1000 * seen.step_seconds / n:.2f} ms | "
            f"{1000 * seen.step_seconds / max(seen.steps, 1):.2f} ms | "
            f"{1000 * outside / n:.2f} ms | {1000 * total / n:.2f} ms |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument(
        "--plan-every", type=int, default=5, help="run the original plan's loop on every Nth prompt"
    )
    parser.add_argument(
        "--big-batch", type=int, default=128, help="batch size of the second batched side"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="then time prefill, steps and the rest per side"
    )
    parser.add_argument("--personas", type=int, default=200)
    parser.add_argument("--examples", type=int, default=40)
    args = parser.parse_args()
    set_threads(args.threads)
    prompts = cluster_prompts(args.personas, args.examples, seed=0)
    base = load_base_model(ModelConfig(device="cpu"))
    config = EvalConfig()
    plan = EvalConfig(stop_at_newline=False)
    big = EvalConfig(batch_size=args.big_batch)
    sides = [
        Side(
            f"batched, batch {config.batch_size} (default)",
            lambda p: generate_replies(base, p, eval_config=config),
        ),
        Side(
            f"batched, batch {big.batch_size}",
            lambda p: generate_replies(base, p, eval_config=big),
        ),
        Side(
            "one at a time, same settings",
            one_at_a_time(base, generation_config(config, base.tokenizer), config.prompt_limit),
        ),
        Side(
            "one at a time, original plan (no stop)",
            one_at_a_time(base, generation_config(plan, base.tokenizer), plan.prompt_limit),
            every=args.plan_every,
        ),
    ]
    generate_replies(base, prompts[:8], eval_config=config)  # warm-up, not timed
    for r in range(args.rounds):
        share = prompts[r :: args.rounds]
        for side in sides if r % 2 == 0 else sides[::-1]:
            chosen = share[:: side.every]
            started = time.perf_counter()
            replies = side.run(chosen)
            side.seconds += time.perf_counter() - started
            side.prompts += len(chosen)
            side.replies.update(zip(chosen, replies, strict=True))
    batched = sides[0]
    print(
        f"{len(prompts)} prompts ({ARCHETYPE} archetype, tiny model, EvalConfig defaults: "
        f"batch {config.batch_size}, max_new_tokens {config.max_new_tokens}), "
        f"torch threads {args.threads}, {args.rounds} interleaved rounds"
    )
    print("| side | prompts timed | seconds | per prompt | for 720 | ratio to batched |")
    print("|---|---|---|---|---|---|")
    per_batched = batched.seconds / batched.prompts
    for side in sides:
        per = side.seconds / side.prompts
        print(
            f"| {side.name} | {side.prompts} | {side.seconds:.1f} | {1000 * per:.1f} ms | "
            f"{per * len(prompts):.1f} s | {per / per_batched:.1f}x |"
        )
    same = sum(batched.replies[p] == sides[2].replies[p] for p in prompts)
    print(f"identical replies, batched vs one at a time: {same}/{len(prompts)}")
    if args.breakdown:
        print_breakdown(base, sides, prompts[:: args.rounds])


if __name__ == "__main__":
    main()
