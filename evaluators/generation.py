"""Batched greedy generation of replies, with or without a LoRA adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trainers.base_model import BaseModel


@contextmanager
def adapter_applied(base: BaseModel, adapter_dir: Path | None) -> Iterator[Any]:
    """Yield the model to generate with: the base model, or it with a saved adapter loaded.

    The adapter is removed again afterwards, so the base model can serve the next method.
    """
    if adapter_dir is None:
        yield base.model
        return
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no peft adapter in {adapter_dir} (adapter_config.json missing)")
    model = PeftModel.from_pretrained(base.model, str(adapter_dir))
    model.eval()
    try:
        yield model
    finally:
        base.model = model.unload()


def clean_reply(text: str) -> str:
    """Keep the reply's first turn: generation may run on into the partner's next line."""
    return " ".join(text.strip().split("\n", 1)[0].split())


def generate_replies(
    base: BaseModel,
    prompts: Sequence[str],
    *,
    adapter_dir: Path | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 40,
    max_prompt_tokens: int = 384,
    progress: str | None = None,
    on_batch: Callable[[list[int], list[str]], None] | None = None,
) -> list[str]:
    """Generate one reply per prompt by greedy decoding, in batches of similar length.

    Args:
        base: The loaded base model.
        prompts: Prompts from :func:`trainers.prompt.build_prompt`.
        adapter_dir: A peft adapter directory to apply, or None for the bare base model.
        batch_size: Prompts per generate call.
        max_new_tokens: Length limit of a reply.
        max_prompt_tokens: Longer prompts are cut from the left.
        progress: A label for a progress bar, or None for none.
        on_batch: Called after each batch with the prompt indices and their replies, so a
            caller can save results as they come (and resume after a crash).
    """
    import torch
    from tqdm.auto import tqdm

    tokenizer = base.tokenizer
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: list[str] = [""] * len(prompts)
    side, trunc = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    try:
        with adapter_applied(base, adapter_dir) as model, torch.inference_mode():
            for batch in tqdm(batches, desc=progress, disable=progress is None, leave=False):
                enc = tokenizer(
                    [prompts[i] for i in batch],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=max_prompt_tokens,
                ).to(base.device)
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                new = out[:, enc["input_ids"].shape[1] :]
                for i, text in zip(
                    batch, tokenizer.batch_decode(new, skip_special_tokens=True), strict=True
                ):
                    replies[i] = clean_reply(text)
                if on_batch is not None:
                    on_batch(batch, [replies[i] for i in batch])
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, trunc
    return replies
