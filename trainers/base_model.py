"""The base causal LM and its tokenizer: any Hugging Face model, or the demo's tiny one.

``base_model = "tiny"`` selects the tiny model of :mod:`trainers.tiny`, built on first use and
cached; every other value is a Hugging Face model path or id, loaded with ``from_pretrained``.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.config import TINY_MODEL, ModelConfig
from trainers.devices import choose_precision, resolve_device

if TYPE_CHECKING:
    import torch


@dataclass
class BaseModel:
    """A loaded base model with its tokenizer, kept in memory by a worker across trials."""

    model: Any
    tokenizer: Any
    name: str
    device: str
    """One device: ``"cpu"`` or ``"cuda:N"``."""
    precision: str = "fp32"
    """How training computes: ``"bf16"`` (weights in bf16), ``"fp16"`` (fp32 weights, fp16
    autocast with loss scaling) or ``"fp32"``; see :func:`choose_precision`."""
    prompt_format: str = "plain"
    """``"plain"`` or ``"chat"`` (:attr:`trainers.config.ModelConfig.prompt_format`)."""
    gradient_checkpointing: bool = False
    """Whether training recomputes activations (:attr:`ModelConfig.gradient_checkpointing`)."""

    @property
    def chat(self) -> bool:
        """True when prompts go through the tokenizer's chat template."""
        return self.prompt_format == "chat"


def model_path(config: ModelConfig) -> str:
    """Where ``from_pretrained`` finds the model: ``~`` expanded for a local path, the tiny
    model's cache folder (built if needed) for ``"tiny"``, a hub id unchanged."""
    if config.base_model == TINY_MODEL:
        from trainers.tiny import ensure_tiny_model

        return str(ensure_tiny_model(config))
    if config.base_model.startswith("~"):
        return str(Path(config.base_model).expanduser())
    return config.base_model


def load_base_model(config: ModelConfig) -> BaseModel:
    """Load the base model and tokenizer named by the config, building the tiny one if needed.

    The weights load in bf16 where training will run in bf16 (:func:`choose_precision`),
    else in fp32, straight onto the one device of :func:`resolve_device` (``device_map``: an
    8B model does not pass through 16 GB of host memory first).

    The model stays resident while a process trains or evaluates many adapters on it, so
    everything alive once it is loaded (the model, the libraries) is moved out of the cyclic
    garbage collector's sight (``gc.freeze``): accelerate runs ``gc.collect()`` at every
    ``Trainer.train``, and each of those scanned about 450,000 objects (0.17 s) before.

    Raises:
        ValueError: If the model path or id cannot be loaded (the message names it), or
            ``prompt_format = "chat"`` and the tokenizer has no chat template.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_path(config)
    device = resolve_device(config.device)
    precision = choose_precision(device)
    options: dict[str, Any] = {"trust_remote_code": config.trust_remote_code}
    if config.attn_implementation is not None:
        options["attn_implementation"] = config.attn_implementation
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch.bfloat16 if precision == "bf16" else torch.float32,
            device_map=device,  # weights go straight to the device, not through host memory
            **options,
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ValueError(
            f"cannot load base model {config.base_model!r}: {_first_line(exc)}"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if config.prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"model.prompt_format='chat' but the tokenizer of {config.base_model!r} has no "
            "chat template: expected prompt_format='plain' or an instruct model"
        )
    model.eval()
    gc.freeze()
    return BaseModel(
        model=model,
        tokenizer=tokenizer,
        name=config.base_model,
        device=device,
        precision=precision,
        prompt_format=config.prompt_format,
        gradient_checkpointing=config.gradient_checkpointing,
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


__all__ = [
    "BaseModel",
    "choose_precision",
    "load_base_model",
    "model_path",
    "parameter_count",
    "resolve_device",
    "set_threads",
]


def set_threads(n: int | None) -> None:
    """Pin torch's CPU threads (a worker per core shares the machine fairly)."""
    if n:
        import torch

        torch.set_num_threads(n)


def parameter_count(model: torch.nn.Module) -> int:
    """Number of parameters of a model."""
    return sum(p.numel() for p in model.parameters())
