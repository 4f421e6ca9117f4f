"""Measure the persona effect: does the base model read the persona line?

On the demo dataset (the project's generator, seed 0), the base model answers each test
example twice: with its own persona's text in the prompt, and with another persona's (the one
farthest from it in embedding space, as the evaluator's ``persona_swapped`` baseline picks).
The contexts and references are identical, so the difference in similarity to the reference
is paired example by example; its interval is persona-level
(:func:`evaluators.stats.estimates.paired_difference`). A model that ignores the persona scores
the same either way. Also reported: each side's floor (its replies against other personas'
references), and how many distinct replies the own-persona side gives (collapse check); with
``--adapter DIR`` the same is measured with a trained LoRA adapter applied.

Run:  .venv/bin/python benchmarks/bench_persona_effect.py [--archetype fitness|all]
      [--adapter DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from evaluators.config import EvalConfig
from evaluators.scoring.generation import generate_replies
from evaluators.scoring.similarity import (
    macro_mean,
    normalized,
    pairwise_similarity,
    persona_means,
    similarity_floor,
)
from evaluators.stats.estimates import paired_difference
from trainers.base_model import load_base_model, set_threads
from trainers.config import ModelConfig
from trainers.data import SplitConfig, load_dataset
from trainers.embedding import embed
from trainers.prompt import build_prompt
from trainers.tiny import persona_archetypes, write_demo_dataset


def demo_personas(n_personas: int, examples: int, seed: int) -> tuple[list[Any], list[str]]:
    """The demo dataset's personas (split as the service splits them) and their archetypes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_demo_dataset(
            Path(tmp) / "demo.jsonl",
            n_personas=n_personas,
            examples_per_persona=examples,
            seed=seed,
        )
        dataset = load_dataset(path, split=SplitConfig()).dataset
    return list(dataset.personas), persona_archetypes(n_personas, seed=seed)


def farthest_partners(personas: list[Any]) -> dict[str, Any]:
    """Each persona's partner: the other persona with the least similar text (embeddings)."""
    import numpy as np

    vectors = np.asarray(embed([p.text for p in personas]), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, np.inf)
    return {
        p.persona_id: personas[int(np.argmin(row))]
        for p, row in zip(personas, similarity, strict=True)
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    personas, kinds = demo_personas(args.personas, args.examples, args.seed)
    partners = farthest_partners(personas)
    chosen = [p for p, k in zip(personas, kinds, strict=True) if args.archetype in ("all", k)]
    items = [(p, ex) for p in chosen for ex in p.examples if ex.split == "test"]
    keys = [p.persona_id for p, _ in items]
    refs = [ex.reply for _, ex in items]
    own = [build_prompt(p.text, ex.context) for p, ex in items]
    swapped = [build_prompt(partners[p.persona_id].text, ex.context) for p, ex in items]

    started = time.monotonic()
    base = load_base_model(ModelConfig(seed=args.model_seed))
    built = time.monotonic() - started
    config = EvalConfig()
    adapter = Path(args.adapter) if args.adapter else None
    sides = {}
    for name, prompts in (("own", own), ("swapped", swapped)):
        replies = generate_replies(base, prompts, eval_config=config, adapter_dir=adapter)
        sims = [float(s) for s in pairwise_similarity(replies, refs)]
        mean = macro_mean(persona_means(keys, sims))
        floor = similarity_floor(replies, refs, keys)
        sides[name] = {
            "mean_similarity": mean,
            "floor": floor,
            "normalized": normalized(mean, floor),
            "distinct_replies": len(set(replies)),
            "samples": replies[:3],
            "_sims": sims,
        }
    diff = paired_difference(sides["own"].pop("_sims"), sides["swapped"].pop("_sims"), keys)
    return {
        "model": "tiny" if adapter is None else f"tiny + {adapter}",
        "archetype": args.archetype,
        "n_examples": len(items),
        "n_personas": len(chosen),
        "model_load_or_build_seconds": round(built, 1),
        **sides,
        "own_minus_swapped": diff.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archetype", default="fitness", help="an archetype, or 'all'")
    parser.add_argument("--personas", type=int, default=200)
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="demo dataset seed")
    parser.add_argument("--model-seed", type=int, default=0, help="tiny model seed")
    parser.add_argument("--adapter", default=None, help="a peft adapter directory to apply")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    set_threads(args.threads)
    result = measure(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
