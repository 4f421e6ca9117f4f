"""Training configuration: small dataclasses grouped by concern, checked on creation.

A trial's config is a base config changed with :func:`dataclasses.replace`, so every
field has a default that a study config only overrides where it differs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

TINY_MODEL = "tiny"
"""The ``base_model`` value that selects the project's own tiny causal LM (built, then cached)."""


def _check(condition: bool, name: str, value: object, expected: str) -> None:
    if not condition:
        raise ValueError(f"invalid {name}={value!r}: expected {expected}")


@dataclass(frozen=True)
class ModelConfig:
    """Which base causal LM to fine-tune."""

    base_model: str = TINY_MODEL
    """``"tiny"`` for the project's own model, or any Hugging Face model path or id."""
    cache_dir: str | None = None
    """Where the tiny model is cached; default ``$HPO_CACHE_DIR`` or ``~/.cache/persona-hpo``."""
    seed: int = 0
    """Seed of the tiny model's tokenizer, weights and pretraining."""
    device: str = "auto"
    """``"auto"`` (the first visible GPU, else the CPU), ``"cpu"``, ``"cuda"`` (the first
    visible GPU) or ``"cuda:N"``: one device per process, never several (a worker per GPU)."""
    trust_remote_code: bool = False
    """Run the model's own code from its folder or hub repository (models with ``auto_map``)."""
    attn_implementation: str | None = None
    """Attention kernel for ``from_pretrained``: None (transformers chooses), ``"eager"``,
    ``"sdpa"``, ``"flash_attention_2"`` or ``"flash_attention_3"``."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for long prompts, ~30% slower."""
    prompt_format: str = "plain"
    """``"plain"`` (persona line, speaker tags) or ``"chat"`` (the tokenizer's chat template:
    persona as the system message, turns as user and assistant messages)."""

    def __post_init__(self) -> None:
        _check(bool(self.base_model), "model.base_model", self.base_model, "a model path or id")
        _check(
            self.device in ("auto", "cpu", "cuda") or _is_cuda_index(self.device),
            "model.device",
            self.device,
            "'auto', 'cpu', 'cuda' or 'cuda:N'",
        )
        _check(
            self.attn_implementation in ATTN_IMPLEMENTATIONS,
            "model.attn_implementation",
            self.attn_implementation,
            f"one of {ATTN_IMPLEMENTATIONS}",
        )
        _check(
            self.prompt_format in PROMPT_FORMATS,
            "model.prompt_format",
            self.prompt_format,
            f"one of {PROMPT_FORMATS}",
        )


ATTN_IMPLEMENTATIONS = (None, "eager", "sdpa", "flash_attention_2", "flash_attention_3")
"""Values of :attr:`ModelConfig.attn_implementation` (transformers' own names)."""

PROMPT_FORMATS = ("plain", "chat")
"""Values of :attr:`ModelConfig.prompt_format`."""

LORA_TARGETS = ("attention", "linear")
"""Values of :attr:`TrainConfig.lora_targets`, the default first (:mod:`trainers.targets`)."""


def _is_cuda_index(device: str) -> bool:
    kind, _, index = device.partition(":")
    return kind == "cuda" and index.isdigit()


@dataclass(frozen=True)
class DataConfig:
    """Which examples a training run sees."""

    max_train_per_persona: int | None = None
    """Cap on train examples per persona (None: all); small demos use it to fit a CPU."""
    max_val_per_persona: int | None = None
    """Cap on validation examples per persona (None: all)."""
    max_seq_length: int = 256
    """Prompt plus reply, in tokens; a longer prompt keeps its persona line whole and loses its
    oldest turns first (``trainers.prompt.fit_prompt``)."""
    group_by_length: bool = True
    """Batch rows of similar length (transformers' LengthGroupedSampler, seeded): an epoch still
    sees every example once; padding falls from 8-24% of the computed tokens to under 1%."""
    pad_to_multiple_of: int = 1
    """Pad a batch's length up to a multiple of this: 8 aligns GPU tensor-core shapes, at about
    3.5 more padding tokens a row (4% of the demo's 85-token rows, 2% of 220-token rows)."""
    packing: bool = False
    """Padding-free batches: a batch's rows joined into one sequence, positions restarting at
    every row (DataCollatorWithFlattening); refused where the attention would mix the rows."""

    def __post_init__(self) -> None:
        for name in ("max_train_per_persona", "max_val_per_persona"):
            value = getattr(self, name)
            _check(value is None or value >= 1, f"data.{name}", value, "None or an integer >= 1")
        _check(self.max_seq_length >= 16, "data.max_seq_length", self.max_seq_length, ">= 16")
        _check(
            self.pad_to_multiple_of >= 1 and not (self.packing and self.pad_to_multiple_of > 1),
            "data.pad_to_multiple_of",
            self.pad_to_multiple_of,
            "an integer >= 1, and 1 with data.packing (packed batches have no padding)",
        )


@dataclass(frozen=True)
class TrainConfig:
    """One LoRA training run: the hyperparameters a study tunes, and the rest.

    The fields a search space may tune carry ``metadata={"tunable": True}``;
    :func:`tunable_fields` lists them, so a new knob is one edit here.
    """

    epochs: int = field(default=5, metadata={"tunable": True})
    """Passes over the training examples."""
    batch_size: int = field(default=2, metadata={"tunable": True})
    """Examples per optimizer step (per device)."""
    learning_rate: float = field(default=2e-4, metadata={"tunable": True})
    """Peak learning rate of AdamW with linear decay."""
    lora_rank: int = field(default=8, metadata={"tunable": True})
    """LoRA rank r."""
    lora_alpha: int | None = field(default=None, metadata={"tunable": True})
    """LoRA alpha; None means 2 * rank, the usual choice."""
    lora_dropout: float = field(default=0.05, metadata={"tunable": True})
    """Dropout on the LoRA input."""
    target_modules: tuple[str, ...] | None = None
    """Module names to adapt; None chooses for the architecture by ``lora_targets``."""
    lora_targets: str = field(default="attention", metadata={"tunable": True})
    """Which layers LoRA adapts when target_modules names none: ``"attention"`` (peft's default
    for the architecture, else the attention projections) or ``"linear"`` (every linear
    projection, attention and MLP, but the output head and MoE experts and routers)."""
    weight_decay: float = field(default=0.0, metadata={"tunable": True})
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    evals_per_epoch: int = 4
    """Evaluations of eval_loss per epoch; each is one intermediate value for the pruner."""
    seed: int = 0
    """Seed of LoRA initialisation and data order."""
    data: DataConfig = field(default_factory=DataConfig)
    """Which examples the run sees."""

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(
            math.isfinite(self.learning_rate) and 0 < self.learning_rate < 1,
            "learning_rate",
            self.learning_rate,
            "a number in (0, 1)",
        )
        _check(self.lora_rank >= 1, "lora_rank", self.lora_rank, "an integer >= 1")
        _check(
            self.lora_alpha is None or self.lora_alpha > 0,
            "lora_alpha",
            self.lora_alpha,
            "None or a positive integer",
        )
        _check(0 <= self.lora_dropout < 1, "lora_dropout", self.lora_dropout, "a number in [0, 1)")
        _check(
            self.lora_targets in LORA_TARGETS,
            "lora_targets",
            self.lora_targets,
            f"one of {', '.join(LORA_TARGETS)}",
        )
        _check(
            not self.target_modules or self.lora_targets == LORA_TARGETS[0],
            "lora_targets",
            self.lora_targets,
            f"{LORA_TARGETS[0]!r} when target_modules names the modules to adapt",
        )
        _check(self.evals_per_epoch >= 1, "evals_per_epoch", self.evals_per_epoch, ">= 1")

    @property
    def alpha(self) -> int:
        """The LoRA alpha in force."""
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, saved next to every adapter."""
        return asdict(self)


def tunable_fields() -> tuple[str, ...]:
    """The names of the :class:`TrainConfig` fields a search space may tune, in field order."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata.get("tunable"))


def default_cache_dir() -> Path:
    """Where built models are cached: ``$HPO_CACHE_DIR`` or ``~/.cache/persona-hpo``."""
    import os

    env = os.environ.get("HPO_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "persona-hpo"
