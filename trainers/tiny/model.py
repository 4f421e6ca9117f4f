"""The demo's tiny base model: a 2-layer Llama and its tokenizer, built offline and cached.

The model is pretrained on generated persona chats in the prompt format of
:mod:`trainers.prompt` (persona line, turns, reply), so that, like a real chat model, it
reads the persona line: a reply is about one of the persona's traits. The chats' personas
are not the demo dataset's: they come from another generator seed
(:data:`PRETRAIN_SEED_OFFSET`) and exclude every persona of the default demo dataset (their
trait sets neither equal, contain nor are contained in a demo persona's). Fine-tuning then
has a persona-reading base to start from, and ``base_model - persona_swapped`` in the
evaluation measures that reading.

The tokenizer is a byte-level BPE trained on the same chats. Everything is built with no
download, deterministically by seed, and cached on disk; concurrent workers build it once
under a lock. :func:`trainers.base_model.load_base_model` calls :func:`ensure_tiny_model` for
``base_model = "tiny"``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.config import ModelConfig, default_cache_dir

log = logging.getLogger(__name__)

TINY_RECIPE_VERSION = 2
"""Bump when the tiny model's recipe changes, so old caches are not reused (2: pretrained on
persona chats instead of persona-less lines)."""

PRETRAIN_SEED_OFFSET = 1_000_000
"""The pretraining chats use generator seed ``PRETRAIN_SEED_OFFSET + seed``: never a demo
dataset's seed in practice, so other personas than the demo's."""

WEIGHTS_FILE = "model.safetensors"
"""The weights file ``save_pretrained`` writes, whose sha256 ``build.json`` records."""

DEMO_PERSONAS = 200
"""Personas of the default demo dataset (seed 0), which the pretraining chats exclude."""

BUILD_WAIT_NOTICE = 30.0
"""Seconds between the lines of a process that waits for another's build of the model."""


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape and pretraining of the tiny model (about 0.5M parameters)."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    max_positions: int = 512
    corpus_personas: int = 1000
    """Personas of the pretraining chats (disjoint from the demo dataset's)."""
    corpus_examples: int = 20
    """Chats per pretraining persona."""
    max_length: int = 192
    """Tokens of one pretraining chat at most (a chat is one row, never split)."""
    batch_size: int = 32
    pretrain_steps: int = 600
    learning_rate: float = 3e-3


def tiny_model_dir(config: ModelConfig, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """The cache directory of the tiny model for this seed and recipe."""
    import hashlib

    root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    digest = hashlib.sha256(json.dumps(spec.__dict__, sort_keys=True).encode()).hexdigest()[:8]
    return root / f"tiny-llama-v{TINY_RECIPE_VERSION}-{digest}-seed{config.seed}"


def ensure_tiny_model(
    config: ModelConfig,
    spec: TinyModelSpec = TinyModelSpec(),
    *,
    notice_every: float = BUILD_WAIT_NOTICE,
) -> Path:
    """Build the tiny model into its cache directory unless it is there already.

    The build writes to a temporary directory and renames it into place, under a file lock,
    so a crash never leaves a half-built cache and two workers never build it twice. A process
    that finds the lock held says so at once, naming the builder's pid, and again every
    ``notice_every`` seconds until the build is done (:mod:`trainers.tiny.build_lock`).

    Returns:
        The directory that ``from_pretrained`` loads.
    """
    from trainers.tiny.build_lock import build_lock

    target = tiny_model_dir(config, spec)
    if (target / "build.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(target, notice_every=notice_every):
        if (target / "build.json").exists():
            return target
        log.warning(
            "building the tiny base model into %s: once per machine and seed, about %d "
            "pretraining steps (minutes on a CPU)",
            target,
            spec.pretrain_steps,
        )
        # a killed build's folder: no live process builds this model now (we hold its lock)
        for stale in target.parent.glob(f".tmp-{target.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            _build_tiny_model(tmp, config.seed, spec)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_tokenizer(seed: int = 0, spec: TinyModelSpec = TinyModelSpec()) -> Any:
    """The tiny model's tokenizer alone, trained as :func:`ensure_tiny_model` trains it
    (seconds; the model's pretraining takes minutes): for random-init test models."""
    return _train_tokenizer(pretraining_texts(seed, spec), spec)


def _train_tokenizer(corpus: list[str], spec: TinyModelSpec) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=spec.max_positions,
    )


def pretraining_texts(seed: int, spec: TinyModelSpec) -> list[str]:
    """The pretraining chats as prompt and reply texts, in the fine-tuning format."""
    from trainers.prompt import build_prompt, reply_target
    from trainers.tiny.generator import generate_persona_chats, generate_personas

    demo = {str(r["persona"]) for r in generate_personas(DEMO_PERSONAS, 1, seed=0)}
    chats = generate_persona_chats(
        spec.corpus_personas,
        spec.corpus_examples,
        seed=PRETRAIN_SEED_OFFSET + seed,
        exclude=sorted(demo),
    )
    return [
        build_prompt(persona, context) + reply_target(reply) for persona, context, reply in chats
    ]


def _build_tiny_model(out: Path, seed: int, spec: TinyModelSpec) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    texts = pretraining_texts(seed, spec)
    tokenizer = _train_tokenizer(texts, spec)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(model_config)
    loss = _pretrain(model, tokenizer, texts, spec, seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    weights_sha256 = _file_sha256(out / WEIGHTS_FILE)
    (out / "build.json").write_text(
        json.dumps(
            {
                "recipe": TINY_RECIPE_VERSION,
                "seed": seed,
                "parameters": params,
                "final_loss": loss,
                "weights_sha256": weights_sha256,
                "spec": spec.__dict__,
            },
            indent=2,
        )
    )
    log.info(
        "built tiny model: %d parameters, pretraining loss %.3f, weights sha256 %s",
        params,
        loss,
        weights_sha256[:12],
    )


def _file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tiny_model_build(model_dir: Path) -> dict[str, Any]:
    """The tiny model's ``build.json``: recipe, seed, parameters, pretraining loss and the
    sha256 of its weights file.

    The build is deterministic on one machine, but float sums differ across CPUs (another
    CPU gave other weights from the same recipe and seed), so the sha256 names the exact
    model that a set of measured numbers came from. A cache built before the sha256 was
    recorded gets it computed here.
    """
    build: dict[str, Any] = json.loads((model_dir / "build.json").read_text())
    if "weights_sha256" not in build:
        build["weights_sha256"] = _file_sha256(model_dir / WEIGHTS_FILE)
    return build


def _pretrain(
    model: Any, tokenizer: Any, texts: list[str], spec: TinyModelSpec, seed: int
) -> float:
    """A short causal-LM pretraining, one chat per row (so a reply always sees its persona
    line), padded per batch; returns the last smoothed loss."""
    import torch

    rows = [ids[: spec.max_length] for ids in tokenizer(texts)["input_ids"]]
    rows = [[*ids, tokenizer.eos_token_id] for ids in rows]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 20) * (1 - step / spec.pretrain_steps)
    )
    model.train()
    smoothed = float("nan")
    for _step in _progress(range(spec.pretrain_steps), "pretraining the tiny base model"):
        chosen = torch.randint(0, len(rows), (spec.batch_size,), generator=generator).tolist()
        width = max(len(rows[i]) for i in chosen)
        batch = torch.full((len(chosen), width), tokenizer.pad_token_id)
        for n, i in enumerate(chosen):
            batch[n, : len(rows[i])] = torch.tensor(rows[i])
        mask = batch != tokenizer.pad_token_id
        loss = model(
            input_ids=batch, attention_mask=mask.long(), labels=batch.masked_fill(~mask, -100)
        ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        value = loss.item()
        smoothed = value if smoothed != smoothed else 0.9 * smoothed + 0.1 * value
    model.eval()
    return smoothed


PROGRESS_LINES = 10
"""Where no terminal shows a bar (a worker's log file), the pretraining logs this many lines."""


def _progress(items: range, description: str) -> Any:
    """A tqdm bar over ``items`` at a terminal; elsewhere (a worker's log file) an INFO line
    at every tenth of them, so that the log shows the build move."""
    import sys

    from tqdm.auto import tqdm

    if sys.stderr.isatty():
        return tqdm(items, desc=description, leave=False)
    return _logged(items, description)


def _logged(items: range, description: str) -> Iterator[int]:
    import time

    every = max(1, len(items) // PROGRESS_LINES)
    started = time.monotonic()
    for done, item in enumerate(items, 1):
        yield item
        if done % every == 0 or done == len(items):
            log.info(
                "%s: step %d of %d, %.0f s",
                description,
                done,
                len(items),
                time.monotonic() - started,
            )
