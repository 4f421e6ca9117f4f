"""Batched generation of replies, with or without a LoRA adapter, decoded as an
:class:`~evaluators.config.EvalConfig` says (greedy by default)."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evaluators.config import EvalConfig
from evaluators.scoring.adapters import Applied, loaded_or_refused, row_adapters_applied
from trainers.base_model import BaseModel
from trainers.memory import ShrinkingBatch
from trainers.prompt import fit_prompts

REPLY_END = "\n"
"""A reply is one line: the partner's next turn starts after a newline."""

_NEWLINE_IDS: weakref.WeakKeyDictionary[Any, tuple[int, tuple[int, ...]]] = (
    weakref.WeakKeyDictionary()
)
"""Per tokenizer: its length when computed, and its newline token ids."""

CACHE_BUCKET_MIN = 128
"""With ``compile_decoding="buckets"``: the shortest static cache, in tokens; the longer
buckets double it (256, 512, ...), so the default limits (prompt and reply within training's
256 tokens) need at most two."""


@contextmanager
def adapter_applied(base: BaseModel, adapter_dir: Path | None) -> Iterator[Any]:
    """Yield the model to generate with: the base model, or it with a saved adapter loaded.

    The adapter is removed again afterwards, so the base model can serve the next method.

    Raises:
        FileNotFoundError: If ``adapter_dir`` has no peft adapter config.
        AdapterError: If the adapter does not load onto the base model (the base model is
            left as it was: :func:`~evaluators.scoring.adapters.loaded_or_refused`).
    """
    if adapter_dir is None:
        yield base.model
        return
    from peft import PeftModel
    from peft.utils import CONFIG_NAME

    if not (Path(adapter_dir) / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"no peft adapter in {adapter_dir} ({CONFIG_NAME} missing)")
    folder = Path(adapter_dir)
    model = loaded_or_refused(
        base, folder, lambda: PeftModel.from_pretrained(base.model, str(folder))
    )
    model.eval()
    try:
        yield model
    finally:
        base.model = model.unload()


@contextmanager
def _applied(
    base: BaseModel, adapter_dir: Path | None, row_adapters: Sequence[Path | None] | None
) -> Iterator[Applied]:
    """:func:`adapter_applied`, or with ``row_adapters`` each prompt's own adapter."""
    if row_adapters is None:
        with adapter_applied(base, adapter_dir) as model:
            yield Applied(model)
    elif adapter_dir is not None:
        raise ValueError("give adapter_dir or row_adapters, not both")
    else:
        with row_adapters_applied(base, row_adapters) as applied:
            yield applied


def clean_reply(text: str) -> str:
    """Keep the reply's line: the text before the first newline, whitespace collapsed.

    Generation may run on into the partner's next line; a reply that starts with a newline
    is empty (the model ended its turn at once), whether or not generation stopped there.
    """
    return " ".join(text.split(REPLY_END, 1)[0].split())


def newline_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """Every token id whose text contains a newline: the tokens that end a reply's line.

    Special tokens are left out: replies are decoded without them, so their text never ends
    a line. Computed once per tokenizer (again if tokens are added to it), with one batched
    decode of the vocabulary.

    Used as extra end-of-sequence ids, these stop a row exactly where transformers'
    ``stop_strings=["\\n"]`` would need to: the text before a reply's first newline comes
    from the tokens before the first token that holds one (a newline is one character, in one
    token's text), and generation never looks ahead, so those tokens are the same whether or
    not the row stops there. Unlike ``stop_strings`` they cost no per-call setup and no
    per-step string matching (on the tiny model, a tenth to a fifth of a one-prompt
    ``generate``).
    """
    size = len(tokenizer)
    cached = _NEWLINE_IDS.get(tokenizer)
    if cached is not None and cached[0] == size:
        return cached[1]
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode(
        [[i] for i in range(size)], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    ids = tuple(i for i, text in enumerate(texts) if REPLY_END in text and i not in special)
    _NEWLINE_IDS[tokenizer] = (size, ids)
    return ids


def generation_config(config: EvalConfig, tokenizer: Any) -> Any:
    """The transformers ``GenerationConfig`` for an evaluation's decoding settings.

    Every decoding option is set explicitly, so the model's own generation defaults (such
    as transformers' ``top_k=50`` when sampling) cannot change an evaluation silently. With
    ``stop_at_newline``, the end-of-sequence ids are the tokenizer's EOS and every
    :func:`newline_token_ids` token.
    """
    from transformers import GenerationConfig

    eos: Any = tokenizer.eos_token_id
    if config.stop_at_newline:
        own = [] if eos is None else [eos]
        eos = own + [i for i in newline_token_ids(tokenizer) if i not in own]
    sampling: dict[str, Any] = (
        {"temperature": config.temperature, "top_p": config.top_p, "top_k": config.top_k}
        if config.do_sample
        else {}
    )
    return GenerationConfig(
        # "off": never compiled, even where transformers would compile a static cache's step
        disable_compile=config.compile_decoding == "off",
        max_new_tokens=config.max_new_tokens,
        do_sample=config.do_sample,
        num_beams=1,
        repetition_penalty=config.repetition_penalty,
        no_repeat_ngram_size=config.no_repeat_ngram_size,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
        **sampling,
    )


def bucket(n: int, smallest: int) -> int:
    """The smallest of ``smallest``, twice it, four times it, ... that is at least ``n``."""
    size = smallest
    while size < n:
        size *= 2
    return size


def static_cache(
    model: Any, prompt_tokens: int, max_new_tokens: int, *, bucketed: bool = False
) -> Any:
    """A transformers ``StaticCache`` sized for one batch, or None where the model has none.

    The default dynamic cache concatenates every layer's keys and values at every step; on
    the tiny model at batch 32 that was a third of the decoding time. A static cache is
    allocated once per batch, sized to this batch (``cache_implementation="static"`` would
    instead keep the largest size ever used on the model, and attend over it). ``bucketed``
    rounds the size up to a :func:`bucket` of :data:`CACHE_BUCKET_MIN`, so that a compiled
    decoding step sees a few cache shapes, not one per batch.
    """
    from transformers import StaticCache

    length = prompt_tokens + max_new_tokens
    if bucketed:
        length = bucket(length, CACHE_BUCKET_MIN)
    try:
        return StaticCache(config=model.config, max_cache_len=length)
    except (ValueError, TypeError, KeyError, NotImplementedError):
        return None  # an architecture without a static cache keeps the dynamic one


@contextmanager
def _seeded(seed: int, device: str) -> Iterator[None]:
    """Seed torch's generator for the block and restore the caller's state afterwards."""
    import torch

    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _generate_rows(
    applied: Applied,
    tokenizer: Any,
    enc: Any,
    settings: Any,
    rows: Sequence[int],
    bucketed: bool,
    start: int,
    stop: int,
) -> list[str]:
    """The replies of rows ``start:stop`` of a left-padded batch of prompts ``rows``, decoded.

    The rows keep the whole batch's padding, so each row's input (tokens, attention mask,
    positions) is the same however many rows run with it: after an out-of-memory the batch
    runs in smaller parts (:class:`trainers.memory.ShrinkingBatch`) without being padded anew.
    """
    part = {name: value[start:stop] for name, value in enc.items()}
    width = part["input_ids"].shape[1]
    cache = static_cache(applied.model, width, settings.max_new_tokens, bucketed=bucketed)
    extra = {} if cache is None else {"cache": cache}
    names = applied.names(rows[start:stop])
    out = applied.model.generate(**part, generation_config=settings, **extra, **names)
    return list(tokenizer.batch_decode(out[:, width:], skip_special_tokens=True))


def generate_replies(
    base: BaseModel,
    prompts: Sequence[str],
    *,
    eval_config: EvalConfig = EvalConfig(),
    adapter_dir: Path | None = None,
    row_adapters: Sequence[Path | None] | None = None,
    progress: str | None = None,
    on_batch: Callable[[list[int], list[str]], None] | None = None,
) -> list[str]:
    """Generate one reply per prompt, in batches of similar token length, left-padded.

    With ``eval_config.stop_at_newline`` a batch ends once every reply in it has reached its
    newline (a token of :func:`newline_token_ids`), instead of running ``max_new_tokens``
    steps; the replies are the same either way, since only the first line is kept. Sampling is
    seeded once per call, so the same prompts, model and config give the same replies.
    Prompts over ``eval_config.prompt_limit`` are fitted as in training
    (:func:`trainers.prompt.fit_prompt`: the persona stays whole, the oldest turns go first).
    With ``eval_config.compile_decoding="buckets"`` a batch is filled up to a power of two of
    rows (copies of its last prompt, whose replies are dropped) and its static cache sized to
    a :func:`bucket`, so that a compiled decoding step meets few shapes.

    Args:
        base: The loaded base model.
        prompts: Prompts from :func:`trainers.prompt.build_prompt`.
        eval_config: Batch size, lengths and decoding.
        adapter_dir: A peft adapter directory to apply, or None for the bare base model.
        row_adapters: Instead of ``adapter_dir``, each prompt's own adapter (None: the base
            model), all loaded at once and mixed in a batch
            (:mod:`evaluators.scoring.adapters`).
        progress: A label for a progress bar, or None for none.
        on_batch: Called after each batch with the prompt indices and their replies, so a
            caller can save results as they come (and resume after a crash).
    """
    import torch
    from tqdm.auto import tqdm

    tokenizer = base.tokenizer
    settings = generation_config(eval_config, tokenizer)
    fitted = fit_prompts(tokenizer, prompts, eval_config.prompt_limit, chat=base.chat)
    # by token count, not characters: batches of 32 then pad 2%, not 10%, of the demo's prompts
    order = sorted(range(len(prompts)), key=lambda i: len(fitted[i].ids))
    replies: list[str] = [""] * len(prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    size = eval_config.batch_size
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    rows_at_a_time = ShrinkingBatch(size, what="generation")
    bucketed = eval_config.compile_decoding == "buckets"
    try:
        with (
            _applied(base, adapter_dir, row_adapters) as applied,
            torch.inference_mode(),
            _seeded(eval_config.seed, base.device),
        ):
            for batch in tqdm(batches, desc=progress, disable=progress is None, leave=False):
                fill = min(bucket(len(batch), 1), size) - len(batch) if bucketed else 0
                rows = batch + batch[-1:] * fill
                enc = tokenizer.pad(
                    {"input_ids": [list(fitted[i].ids) for i in rows]}, return_tensors="pt"
                ).to(base.device)
                run = functools.partial(
                    _generate_rows, applied, tokenizer, enc, settings, rows, bucketed
                )
                texts = rows_at_a_time.map(run, len(rows))[: len(batch)]
                for i, text in zip(batch, texts, strict=True):
                    replies[i] = clean_reply(text)
                if on_batch is not None:
                    on_batch(batch, [replies[i] for i in batch])
    finally:
        tokenizer.padding_side = side
    return replies


__all__ = [
    "REPLY_END",
    "adapter_applied",
    "bucket",
    "clean_reply",
    "generate_replies",
    "generation_config",
    "newline_token_ids",
    "static_cache",
]
