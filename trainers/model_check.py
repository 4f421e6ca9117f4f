"""Is a base model usable? Checked from its config alone, before a study exists.

``hpo study create`` and ``hpo train`` call :func:`check_base_model`, so that a model the
workers could not train fails there, with one line naming the field, not at the first trial:
a local folder that is missing or holds no ``config.json``, a model with its own code and no
``model.trust_remote_code``, an encoder-decoder (T5) or encoder-only (BERT: a causal-LM head
on bidirectional attention gives meaningless numbers) model, and a model whose LoRA target
modules cannot be resolved. Only ``config.json`` is read: the model is built on the meta
device (no memory, no weights) to find its modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.config import TINY_MODEL, ModelConfig


@dataclass(frozen=True)
class ModelCheck:
    """What the check found."""

    model_type: str
    """The config's ``model_type`` (``"llama"`` for the tiny model)."""
    targets: str
    """The LoRA target modules and how they were chosen (:class:`trainers.targets.Targets`)."""

    def __str__(self) -> str:
        return f"{self.model_type}, LoRA targets {self.targets}"


def check_base_model(
    config: ModelConfig, *, target_modules: Sequence[str] | None = None
) -> ModelCheck:
    """Check that the base model is a decoder-only causal LM that a LoRA can adapt.

    The tiny model is always fine (nothing is read or built). A local path (absolute,
    starting with ``.`` or ``~``, or existing) must be a folder with a ``config.json``;
    ``~`` is expanded as :func:`trainers.base_model.load_base_model` expands it. A hub id
    is read from the hub or its local cache.

    Args:
        config: The model section.
        target_modules: ``TrainConfig.target_modules``; None checks the automatic choice.

    Raises:
        ValueError: One line, ``model.base_model=...: what is wrong and what would be right``.
    """
    if config.base_model == TINY_MODEL:
        return ModelCheck("llama", "q_proj, v_proj (peft default)")
    name = config.base_model
    where = f"model.base_model={name!r}"
    _check_local_folder(name, where)
    model_config = _read_config(config, where)
    model_type = str(getattr(model_config, "model_type", "unknown"))
    _check_causal(model_config, model_type, where)
    try:
        targets = _targets_on_meta(model_config, config, target_modules)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return ModelCheck(model_type, str(targets))


BF16_BYTES = 2
"""Bytes of one weight as a worker loads it on a GPU that supports bf16 (an older GPU keeps
fp32 weights, twice that: :func:`trainers.devices.choose_precision`)."""


def weight_bytes(config: ModelConfig, *, bytes_per_weight: int = BF16_BYTES) -> int | None:
    """About how much memory one copy of the base model's weights takes on a GPU: its
    parameters, counted on the meta device from its ``config.json`` alone (no weights read,
    tied embeddings counted once), times ``bytes_per_weight``. For ``hpo launch``'s warning
    when several workers share a GPU.

    Returns:
        The bytes, or None for the tiny model before its first build (a few MiB at most).

    Raises:
        ValueError: One line, as :func:`check_base_model` raises, when the config cannot be
            read.
    """
    import json

    if config.base_model == TINY_MODEL:
        from trainers.tiny.model import tiny_model_dir

        build = tiny_model_dir(config) / "build.json"
        if not build.is_file():
            return None
        return int(json.loads(build.read_text())["parameters"]) * bytes_per_weight
    import torch
    from transformers import AutoModelForCausalLM

    from trainers.base_model import parameter_count

    where = f"model.base_model={config.base_model!r}"
    _check_local_folder(config.base_model, where)
    model_config = _read_config(config, where)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            model_config, trust_remote_code=config.trust_remote_code
        )
    return parameter_count(model) * bytes_per_weight


def _check_local_folder(name: str, where: str) -> None:
    path = Path(name).expanduser()
    local = path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1
    try:
        if not local and not path.exists():
            return  # a hub id
        found = path.is_dir(), (path / "config.json").is_file()
    except OSError as exc:  # a name too long for a path, say
        raise ValueError(f"{where}: {exc.strerror or exc}") from exc
    if not found[0]:
        raise ValueError(f"{where}: no such folder ({path.resolve()})")
    if not found[1]:
        raise ValueError(
            f"{where}: {path.resolve()} has no config.json; expected a folder written by "
            "save_pretrained, or a Hugging Face model id"
        )


def _read_config(config: ModelConfig, where: str) -> Any:
    from transformers import AutoConfig

    from trainers.base_model import model_path

    try:
        return AutoConfig.from_pretrained(
            model_path(config), trust_remote_code=config.trust_remote_code
        )
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ValueError(
                f"{where}: the model comes with its own code, which runs only with "
                "model.trust_remote_code = true (read the code first)"
            ) from exc
        raise ValueError(f"{where}: cannot read its config: {_first_line(exc)}") from exc
    except (OSError, KeyError, ImportError) as exc:
        hub = _hub_error(exc, config.base_model)
        raise ValueError(
            f"{where}: {hub or 'cannot read its config: ' + _first_line(exc)}"
        ) from exc


def _hub_error(exc: BaseException, model_id: str) -> str | None:
    """Why a hub id's ``config.json`` could not be had, in words, or None if it is not that.

    transformers reports a missing cache entry and an unknown repository alike as an
    ``OSError`` whose first line blames the connection; the cause huggingface_hub raised says
    which it was.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    fix = f"download it where the hub is reachable (hf download {model_id}) or give a local folder"
    if any(isinstance(c, LocalEntryNotFoundError) for c in causes):
        offline = (
            "the machine is offline (HF_HUB_OFFLINE=1)"
            if constants.HF_HUB_OFFLINE
            else "the Hugging Face hub cannot be reached"
        )
        return (
            f"its config.json is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
            f"and {offline}; {fix}"
        )
    if any(isinstance(c, GatedRepoError) for c in causes):
        return "a gated model on the Hugging Face hub: accept its terms and log in (hf auth login)"
    if any(isinstance(c, RepositoryNotFoundError) for c in causes):
        return (
            "no such model on the Hugging Face hub (or a private one: log in with hf auth "
            "login); expected an id like 'Qwen/Qwen2.5-0.5B-Instruct' or a local folder"
        )
    return None


def _check_causal(model_config: Any, model_type: str, where: str) -> None:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    expected = "expected a decoder-only causal LM (Llama, Qwen2, Mistral, Phi-3, GPT-2, ...)"
    if getattr(model_config, "is_encoder_decoder", False):
        raise ValueError(f"{where}: {model_type} is an encoder-decoder model; {expected}")
    custom = "AutoModelForCausalLM" in (getattr(model_config, "auto_map", None) or {})
    if not custom and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(
            f"{where}: {model_type} has no causal-LM class in transformers; {expected}"
        )
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(
        model_config, "is_decoder", False
    ):
        raise ValueError(
            f"{where}: {model_type} is an encoder-only model (bidirectional attention, "
            f"is_decoder=False); {expected}"
        )


def _targets_on_meta(
    model_config: Any, config: ModelConfig, target_modules: Sequence[str] | None
) -> Any:
    """The LoRA targets of the model, built on the meta device from its config."""
    import torch
    from transformers import AutoModelForCausalLM

    from trainers.targets import resolve_targets

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            model_config, trust_remote_code=config.trust_remote_code
        )
    return resolve_targets(model, target_modules)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
