"""Check a saved LoRA adapter folder before anything is loaded or recorded.

peft's ``PeftModel.from_pretrained`` reports a broken folder late and without the file: a
missing ``adapter_model.safetensors`` makes it look the folder up on the Hub ("Repo id must be
in the form 'repo_name'"), a truncated or random file fails inside safetensors, a bad config
inside json. :func:`check_adapter_dir` reads the config and the safetensors header (not the
weights) and names the file at fault: a folder evaluated by hand is refused before an
evaluation run is opened, so no run is left marked running.

Shapes are checked against the adapter's own config (each ``lora_A`` has ``r`` rows, each
``lora_B`` ``r`` columns); whether they fit the base model is known only when it is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers.input_file import (
    ADAPTER_CONFIG_MAX_BYTES,
    InputFileError,
    check_input_file,
    read_json,
)

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "AdapterError",
    "check_adapter_dir",
    "read_adapter_config",
]

ADAPTER_CONFIG = "adapter_config.json"
"""peft's config file name (``peft.utils.CONFIG_NAME``)."""
ADAPTER_WEIGHTS = "adapter_model.safetensors"
"""peft's weights file name (``peft.utils.SAFETENSORS_WEIGHTS_NAME``)."""


class AdapterError(ValueError):
    """An adapter folder that cannot be used; ``str(error)`` is ``"{file}: {reason}"``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[AdapterError], tuple[str, str]]:
        return (type(self), (self.path, self.reason))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_adapter_config(path: str | Path) -> dict[str, Any]:
    """The LoRA config in ``path`` (an ``adapter_config.json``), checked: a JSON object nested
    at most 64 levels, ``peft_type`` LORA and an integer rank ``r``.

    Raises:
        AdapterError: Missing, not a regular file, over 1 MiB, not valid JSON (with its
            line), nested too deeply, or not a LoRA config; the message names the file.
    """
    path = Path(path)
    try:
        config = read_json(path, limit=ADAPTER_CONFIG_MAX_BYTES, what="a peft adapter config")
    except InputFileError as exc:
        if exc.missing:
            raise AdapterError(path, "missing: the folder holds no peft adapter") from None
        raise AdapterError(path, exc.reason) from None
    if not isinstance(config, dict):
        raise AdapterError(path, "not a peft adapter config: expected a JSON object")
    if config.get("peft_type") != "LORA":
        raise AdapterError(
            path, f"peft_type {config.get('peft_type')!r}: expected 'LORA' (a LoRA adapter)"
        )
    rank = config.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise AdapterError(path, f"r={rank!r}: expected the LoRA rank, an integer >= 1")
    return config


def _tensor_shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    try:
        check_input_file(path, limit=None, what="adapter weights (safetensors)")
    except InputFileError as exc:
        if exc.missing:
            raise AdapterError(path, "missing: the adapter has no weights file") from None
        raise AdapterError(path, exc.reason) from None
    try:
        with safe_open(str(path), framework="pt") as weights:
            keys = weights.keys()  # safe_open is not iterable
            return {key: list(weights.get_slice(key).get_shape()) for key in keys}
    except Exception as exc:  # safetensors raises its own SafetensorError, and OSError
        raise AdapterError(
            path, f"not a readable safetensors file (truncated or corrupt?): {_first_line(exc)}"
        ) from None


def check_adapter_dir(adapter_dir: str | Path) -> None:
    """Refuse a LoRA adapter folder that peft could not load, naming the file at fault.

    Args:
        adapter_dir: A folder written by ``PeftModel.save_pretrained``.

    Raises:
        AdapterError: The folder is missing or not a folder; ``adapter_config.json`` is
            missing, not a regular file, over 1 MiB, not JSON, or not a LoRA config;
            ``adapter_model.safetensors`` is missing, not a regular file, truncated or
            corrupt, holds no tensors, or a tensor's shape does not fit the rank.
    """
    folder = Path(adapter_dir)
    if not folder.is_dir():
        raise AdapterError(folder, "not a folder: give a peft adapter folder")
    config = read_adapter_config(folder / ADAPTER_CONFIG)
    weights = folder / ADAPTER_WEIGHTS
    shapes = _tensor_shapes(weights)
    if not shapes:
        raise AdapterError(weights, "holds no tensors")
    rank = config["r"]
    exact_rank = not config.get("rank_pattern")
    for key, shape in sorted(shapes.items()):
        if ("lora_A" in key or "lora_B" in key) and len(shape) != 2:
            raise AdapterError(weights, f"tensor {key} has shape {shape}: expected 2 dimensions")
        if exact_rank and "lora_A" in key and shape[0] != rank:
            raise AdapterError(
                weights, f"tensor {key} has shape {shape}: expected {rank} rows (r={rank})"
            )
        if exact_rank and "lora_B" in key and shape[1] != rank:
            raise AdapterError(
                weights, f"tensor {key} has shape {shape}: expected {rank} columns (r={rank})"
            )
