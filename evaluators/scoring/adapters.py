"""The adapters a generation runs with: none, one, or one per prompt in mixed batches.

With one adapter per prompt, every distinct adapter is loaded onto the base model under its
own name and each batch row names its adapter (peft's ``adapter_names`` argument of
``generate``: a LoRA layer adds each row's own adapter to the base layer's output), so rows
of many personas share a batch. Each row's reply is then what that persona's adapter alone
gives (the tests compare them); the cost is one small gather and scatter per adapter in the
batch and per LoRA layer, which on the CPU outweighs the fuller batches
(:func:`adapter_batches_for`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from evaluators.config import EvalConfig
from trainers.adapter_check import AdapterError
from trainers.base_model import BaseModel
from trainers.memory import is_out_of_memory

T = TypeVar("T")

BASE_ROW = "__base__"
"""peft's adapter name for a row that the base model alone answers."""


def adapter_batches_for(config: EvalConfig, device: str) -> str:
    """``"per_adapter"`` or ``"mixed"``: :attr:`EvalConfig.adapter_batches`, with ``"auto"``
    chosen by device: mixed on a GPU, per adapter on the CPU (there mixed measured 0.82x to
    0.83x of persona by persona with trained adapters: BENCHMARKS.md, "Many adapters per batch")."""
    if config.adapter_batches != "auto":
        return config.adapter_batches
    return "mixed" if device.startswith("cuda") else "per_adapter"


@dataclass(frozen=True)
class Applied:
    """The model to generate with, and each prompt's adapter name (None: one for all)."""

    model: Any
    row_names: tuple[str, ...] | None = None

    def names(self, rows: Sequence[int]) -> dict[str, Any]:
        """``generate``'s keyword for these prompts' rows: ``{"adapter_names": [...]}``, or
        nothing when one adapter (or none) serves every row."""
        if self.row_names is None:
            return {}
        return {"adapter_names": [self.row_names[i] for i in rows]}


def loaded_or_refused(base: BaseModel, folder: Path, load: Callable[[], T]) -> T:
    """Run ``load`` (peft loading ``folder`` onto ``base``); if it fails, leave the base model
    as it was and raise an :class:`~trainers.adapter_check.AdapterError` naming the folder.

    ``trainers.adapter_check`` checks an adapter against its own config only; one whose
    tensors do not fit the base model (another model's, or damaged after the check) fails
    here. ``PeftModel.from_pretrained`` injects the LoRA layers into the base model before
    it loads the weights, so a failed load would leave them in it, and every later method
    would generate through them: they are taken out again. Running out of memory is raised
    as it is (the callers shrink their batches on it).

    Raises:
        AdapterError: ``"{folder}: does not load onto the base model NAME: {peft's reason}"``.
    """
    try:
        return load()
    except Exception as exc:
        remove_adapter_layers(base.model)
        if is_out_of_memory(exc):
            raise
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        reason = " ".join(lines[:2])[:500] or type(exc).__name__
        raise AdapterError(
            folder, f"does not load onto the base model {base.name}: {type(exc).__name__}: {reason}"
        ) from exc


def remove_adapter_layers(model: Any) -> None:
    """Put back the base layers of any peft layer injected into ``model`` (what peft's
    ``unload`` does, for a model whose ``PeftModel`` was never returned to us)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if name and isinstance(module, BaseTunerLayer):
            parent, _, child = name.rpartition(".")
            owner, base_layer = model.get_submodule(parent), module.get_base_layer()
            if getattr(owner, child, None) is module:  # not inside a layer already put back
                setattr(owner, child, base_layer)
    if "peft_config" in vars(model):
        del model.peft_config


@contextmanager
def row_adapters_applied(base: BaseModel, row_adapters: Sequence[Path | None]) -> Iterator[Applied]:
    """Yield the model with each prompt's adapter loaded (None: the base model for it).

    Every distinct adapter is loaded once under its own name; all are removed again
    afterwards, so the base model can serve the next method.

    Raises:
        FileNotFoundError: If an adapter folder has no peft adapter config.
        AdapterError: If an adapter does not load onto the base model (:func:`loaded_or_refused`).
    """
    from peft import PeftModel
    from peft.utils import CONFIG_NAME

    distinct = sorted({Path(d) for d in row_adapters if d is not None})
    for folder in distinct:
        if not (folder / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"no peft adapter in {folder} ({CONFIG_NAME} missing)")
    # peft keeps adapters in module dicts: a name must be a plain identifier, not a path
    name_of = {folder: f"row_adapter_{i}" for i, folder in enumerate(distinct)}
    if not distinct:  # the base model alone: no adapter names to pass
        yield Applied(base.model)
        return
    rows = tuple(BASE_ROW if d is None else name_of[Path(d)] for d in row_adapters)
    first = distinct[0]
    model = loaded_or_refused(
        base,
        first,
        lambda: PeftModel.from_pretrained(base.model, str(first), adapter_name=name_of[first]),
    )
    try:
        for folder in distinct[1:]:
            load = functools.partial(model.load_adapter, str(folder), adapter_name=name_of[folder])
            loaded_or_refused(base, folder, load)
        model.eval()
        yield Applied(model, rows)
    finally:
        base.model = model.unload()


__all__ = [
    "BASE_ROW",
    "Applied",
    "adapter_batches_for",
    "loaded_or_refused",
    "remove_adapter_layers",
    "row_adapters_applied",
]
