"""How generation runs, not what it says: no compiled graph by default even where transformers
would compile the decoding step (forced on the CPU here, as it is on CUDA), a few graphs at most
with bucketed shapes, and many adapters in one batch giving each adapter's own replies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluators.config import EvalConfig
from evaluators.scoring.adapters import adapter_batches_for
from evaluators.scoring.generation import (
    CACHE_BUCKET_MIN,
    bucket,
    generate_replies,
    generation_config,
)
from trainers.prompt import build_prompt, fit_prompts

PROMPTS = [
    build_prompt("I hike. " * (1 + 6 * (i % 3)), "Hi there!\nWhat do you do? " * (1 + i % 2))
    for i in range(6)
]
"""Six prompts from about 20 to over 100 tokens: two cache buckets, batches of 4 and 2."""
SHORT = EvalConfig(batch_size=4, max_new_tokens=6)


def _state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def compile_forced(tiny_base: Any) -> Iterator[Any]:
    """The tiny model with transformers' compile path on, as on CUDA (the eager backend:
    dynamo builds its graphs, nothing is compiled to code); the graph counters reset."""
    import torch
    from torch._dynamo.utils import counters
    from transformers import CompileConfig

    forced = CompileConfig(backend="eager")
    forced._compile_all_devices = True  # a class attribute, not an argument
    saved = tiny_base.model.generation_config.compile_config
    tiny_base.model.generation_config.compile_config = forced
    torch._dynamo.reset()
    counters.clear()
    try:
        yield counters
    finally:
        tiny_base.model.generation_config.compile_config = saved
        torch._dynamo.reset()


def _graphs(counters: Any) -> int:
    return int(counters["stats"]["unique_graphs"])


def test_generation_builds_no_graph_by_default(
    tiny_base: Any, compile_forced: Any, random_adapters: list[Path]
) -> None:
    import torch
    from transformers import StaticCache

    plain = generate_replies(tiny_base, PROMPTS, eval_config=SHORT)
    with_adapter = generate_replies(
        tiny_base, PROMPTS, eval_config=SHORT, adapter_dir=random_adapters[0]
    )
    assert _graphs(compile_forced) == 0
    assert len(plain) == len(with_adapter) == len(PROMPTS) and plain != with_adapter

    # The path before: a static cache per batch, compiling allowed, builds graphs here.
    settings = generation_config(SHORT, tiny_base.tokenizer)
    settings.disable_compile = False
    side, tiny_base.tokenizer.padding_side = tiny_base.tokenizer.padding_side, "left"
    try:
        for start in (0, 4):
            enc = tiny_base.tokenizer(PROMPTS[start : start + 4], return_tensors="pt", padding=True)
            cache = StaticCache(
                config=tiny_base.model.config, max_cache_len=enc["input_ids"].shape[1] + 6
            )
            with torch.inference_mode():
                tiny_base.model.generate(**enc, generation_config=settings, cache=cache)
    finally:
        tiny_base.tokenizer.padding_side = side
    assert _graphs(compile_forced) >= 1


def test_bucketed_decoding_builds_a_graph_per_shape_at_most(
    tiny_base: Any, compile_forced: Any, random_adapters: list[Path]
) -> None:
    before = _state(tiny_base.model)
    plain = generate_replies(tiny_base, PROMPTS, eval_config=SHORT)
    config = EvalConfig(batch_size=4, max_new_tokens=6, compile_decoding="buckets")
    runs = [
        generate_replies(tiny_base, PROMPTS, eval_config=config, adapter_dir=d)
        for d in (None, random_adapters[0])
    ]
    # The shapes the decoding step met: (rows, cache length) of each batch, sorted by length.
    fitted = fit_prompts(tiny_base.tokenizer, PROMPTS, SHORT.prompt_limit)
    lengths = sorted(len(f.ids) for f in fitted)
    shapes = {
        (bucket(len(lengths[i : i + 4]), 1), bucket(lengths[i : i + 4][-1] + 6, CACHE_BUCKET_MIN))
        for i in range(0, len(lengths), 4)
    }
    assert len(shapes) == 2
    # One graph per shape, and at most one more per shape for the adapted model.
    assert 1 <= _graphs(compile_forced) <= 2 * len(shapes)
    assert runs[0] == plain  # filled rows and a longer cache change no reply
    assert _state(tiny_base.model).keys() == before.keys()


def test_mixed_adapter_batches_give_each_adapter_its_own_replies(
    tiny_base: Any, random_adapters: list[Path]
) -> None:
    import torch

    before = _state(tiny_base.model)
    prompts = [*PROMPTS, *PROMPTS[::-1]]
    owners: list[Path | None] = [random_adapters[i % 3] for i in range(len(prompts))]
    owners[1] = owners[8] = None  # rows the base model answers
    mixed = generate_replies(tiny_base, prompts, eval_config=SHORT, row_adapters=owners)
    for owner in {*owners}:
        rows = [i for i, o in enumerate(owners) if o == owner]
        alone = generate_replies(
            tiny_base, [prompts[i] for i in rows], eval_config=SHORT, adapter_dir=owner
        )
        assert [mixed[i] for i in rows] == alone, owner
    assert len(set(mixed)) > 3  # the adapters differ, so the test could see a mix-up
    after = _state(tiny_base.model)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_adapter_batches_are_chosen_by_device() -> None:
    assert adapter_batches_for(EvalConfig(), "cpu") == "per_adapter"
    assert adapter_batches_for(EvalConfig(), "cuda:0") == "mixed"
    assert adapter_batches_for(EvalConfig(adapter_batches="mixed"), "cpu") == "mixed"
    assert adapter_batches_for(EvalConfig(adapter_batches="per_adapter"), "cuda:1") == "per_adapter"
    with pytest.raises(ValueError, match="invalid compile_decoding='always'"):
        EvalConfig(compile_decoding="always")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid adapter_batches='some'"):
        EvalConfig(adapter_batches="some")  # type: ignore[arg-type]
