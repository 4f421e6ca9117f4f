"""The demo's tiny base model: a 2-layer Llama and its tokenizer, built offline and cached.

The tokenizer is a byte-level BPE trained on the demo generator's generic chat text; the model
is pretrained briefly on that text so that it produces words. It is built with no download,
deterministically by seed, and cached on disk; concurrent workers build it once under a lock.
:func:`trainers.base_model.load_base_model` calls :func:`ensure_tiny_model` for
``base_model = "tiny"``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.config import ModelConfig, default_cache_dir

log = logging.getLogger(__name__)

TINY_RECIPE_VERSION = 1
"""Bump when the tiny model's recipe changes, so old caches are not reused."""


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape and pretraining of the tiny model (about 0.6M parameters)."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    max_positions: int = 512
    corpus_lines: int = 6000
    block_size: int = 64
    batch_size: int = 32
    pretrain_steps: int = 200
    learning_rate: float = 3e-3


def tiny_model_dir(config: ModelConfig, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """The cache directory of the tiny model for this seed and recipe."""
    import hashlib

    root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    digest = hashlib.sha256(json.dumps(spec.__dict__, sort_keys=True).encode()).hexdigest()[:8]
    return root / f"tiny-llama-v{TINY_RECIPE_VERSION}-{digest}-seed{config.seed}"


def ensure_tiny_model(config: ModelConfig, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Build the tiny model into its cache directory unless it is there already.

    The build writes to a temporary directory and renames it into place, under a file lock,
    so a crash never leaves a half-built cache and two workers never build it twice.

    Returns:
        The directory that ``from_pretrained`` loads.
    """
    from filelock import FileLock

    target = tiny_model_dir(config, spec)
    if (target / "build.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "build.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            _build_tiny_model(tmp, config.seed, spec)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


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


def _build_tiny_model(out: Path, seed: int, spec: TinyModelSpec) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainers.prompt import build_prompt, reply_target
    from trainers.tiny.generator import generate_generic_corpus

    torch.manual_seed(seed)
    lines = generate_generic_corpus(spec.corpus_lines, seed=seed)
    # Pretraining text in the chat layout that fine-tuning uses, so the model learns to
    # answer after the speaker tag; the persona line stays empty (no persona is known yet).
    texts = [
        build_prompt("", question) + reply_target(answer)
        for question, answer in zip(lines[0::2], lines[1::2], strict=False)
    ]
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
    (out / "build.json").write_text(
        json.dumps(
            {
                "recipe": TINY_RECIPE_VERSION,
                "seed": seed,
                "parameters": params,
                "final_loss": loss,
                "spec": spec.__dict__,
            },
            indent=2,
        )
    )
    log.info("built tiny model: %d parameters, pretraining loss %.3f", params, loss)


def _pretrain(
    model: Any, tokenizer: Any, texts: list[str], spec: TinyModelSpec, seed: int
) -> float:
    """A short causal-LM pretraining on packed blocks; returns the last smoothed loss."""
    import torch

    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text)["input_ids"] + [tokenizer.eos_token_id])
    n_blocks = len(ids) // spec.block_size
    blocks = torch.tensor(ids[: n_blocks * spec.block_size]).view(n_blocks, spec.block_size)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 20) * (1 - step / spec.pretrain_steps)
    )
    model.train()
    smoothed = float("nan")
    for _step in _progress(range(spec.pretrain_steps), "pretraining the tiny base model"):
        batch = blocks[torch.randint(0, n_blocks, (spec.batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        value = loss.item()
        smoothed = value if smoothed != smoothed else 0.9 * smoothed + 0.1 * value
    model.eval()
    return smoothed


def _progress(items: range, description: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, leave=False, disable=None)
