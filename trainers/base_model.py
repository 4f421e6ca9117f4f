"""The base causal LM and its tokenizer: any Hugging Face model, or the demo's tiny one.

``base_model = "tiny"`` selects the tiny model of :mod:`trainers.tiny`, built on first use and
cached; every other value is a Hugging Face model path or id, loaded with ``from_pretrained``.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainers.config import TINY_MODEL, ModelConfig

if TYPE_CHECKING:
    import torch


@dataclass
class BaseModel:
    """A loaded base model with its tokenizer, kept in memory by a worker across trials."""

    model: Any
    tokenizer: Any
    name: str
    device: str


def resolve_device(device: str) -> str:
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("model.device='cuda' but no CUDA device is visible")
    return device


def load_base_model(config: ModelConfig) -> BaseModel:
    """Load the base model and tokenizer named by the config, building the tiny one if needed.

    The model stays resident while a process trains or evaluates many adapters on it, so
    everything alive once it is loaded (the model, the libraries) is moved out of the cyclic
    garbage collector's sight (``gc.freeze``): accelerate runs ``gc.collect()`` at every
    ``Trainer.train``, and each of those scanned about 450,000 objects (0.17 s) before.

    Raises:
        ValueError: If the model path or id cannot be loaded (the message names it).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = config.base_model
    if config.base_model == TINY_MODEL:
        from trainers.tiny import ensure_tiny_model

        path = str(ensure_tiny_model(config))
    device = resolve_device(config.device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.bfloat16 if device == "cuda" else torch.float32
        )
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"cannot load base model {config.base_model!r}: {str(exc).splitlines()[0]}"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    gc.freeze()
    return BaseModel(model=model, tokenizer=tokenizer, name=config.base_model, device=device)


def set_threads(n: int | None) -> None:
    """Pin torch's CPU threads (a worker per core shares the machine fairly)."""
    if n:
        import torch

        torch.set_num_threads(n)


def parameter_count(model: torch.nn.Module) -> int:
    """Number of parameters of a model."""
    return sum(p.numel() for p in model.parameters())
