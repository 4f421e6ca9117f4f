"""Which modules a LoRA adapts, for any causal LM.

peft knows default target modules for some model types only
(``peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``); for the others
(Phi-3, Qwen2-MoE, OLMoE, ...) ``get_peft_model`` fails with "Please specify target_modules".
:func:`resolve_targets` answers for every model, in this order:

1. ``TrainConfig.target_modules``, when the config names them (``"all-linear"`` included);
2. with the preset ``TrainConfig.lora_targets = "linear"``: every linear projection (attention
   and MLP) except the output head and mixture-of-experts experts and routers;
3. with the default preset ``"attention"``: peft's default for the model type, where it has one;
4. the attention projections, found by module type: the ``nn.Linear`` / ``Conv1D`` children of
   every module whose class name ends in ``Attention`` (``q_proj ... o_proj``, ``qkv_proj``);
5. otherwise every linear layer except the output head and mixture-of-experts experts and
   routers (what peft's ``"all-linear"`` would take, less the MoE parts).

Expert and router layers are never chosen by steps 2 to 5: adapting a router changes which
experts a token goes to, and the MoE merge (``cat``) merges what the adapters share. Step 1
may name them on purpose. The resolved names go into the ``LoraConfig``, so peft's
``adapter_config.json`` records them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainers.config import LORA_TARGETS

log = logging.getLogger(__name__)

ALL_LINEAR = "all-linear"
"""peft's name for every linear layer but the output head."""
ATTENTION, LINEAR = LORA_TARGETS
"""The presets of ``TrainConfig.lora_targets``: peft's default, else the attention projections
(the default); every linear projection (attention and MLP) but the output head and MoE experts
and routers."""

MOE_PART = re.compile(r"(^|\.)(experts?|router|gate|shared_expert_gate)(\.|$)")
"""A module path inside a mixture-of-experts block's experts or router (``mlp.gate`` is
Mixtral's and Qwen2-MoE's router; ``gate_proj`` of a dense MLP does not match)."""


@dataclass(frozen=True)
class Targets:
    """The modules a LoRA adapts, and how they were chosen."""

    modules: tuple[str, ...] | str
    """Module names (peft matches a name or a name's last parts), or one regex / ``all-linear``."""
    source: str
    """``"config"``, ``"peft default"``, ``"attention projections"`` or ``"linear layers"``."""

    def __str__(self) -> str:
        names = self.modules if isinstance(self.modules, str) else ", ".join(self.modules)
        return f"{names} ({self.source})"


def resolve_targets(
    model: Any, configured: Sequence[str] | None = None, preset: str = ATTENTION
) -> Targets:
    """The target modules of a LoRA on ``model`` (see the module docstring for the order).

    Args:
        model: A transformers causal LM (real or on the meta device).
        configured: ``TrainConfig.target_modules``; None chooses for the architecture.
        preset: ``TrainConfig.lora_targets``: :data:`ATTENTION` or :data:`LINEAR`, used
            when ``configured`` names no module.

    Raises:
        ValueError: If configured names match no module, or the model has no linear layer
            to adapt.
    """
    if configured:
        names = tuple(configured)
        if names != (ALL_LINEAR,):
            _check_present(model, names)
        return Targets(ALL_LINEAR if names == (ALL_LINEAR,) else names, "config")
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if preset == LINEAR:
        projections = linear_layers(model)
        if projections:
            return Targets(_short_names(model, projections), "linear projections")
    default = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(str(model_type))
    if default is not None:
        return Targets(default if isinstance(default, str) else tuple(default), "peft default")
    attention = attention_projections(model)
    if attention:
        return Targets(attention, "attention projections")
    linear = linear_layers(model)
    if linear:
        return Targets(linear, "linear layers")
    raise ValueError(
        f"no linear layer to adapt in model type {model_type!r}: expected attention "
        "projections; set train.target_modules to the module names to adapt"
    )


def _linear_types() -> tuple[type, ...]:
    import torch
    from transformers.pytorch_utils import Conv1D

    return torch.nn.Linear, Conv1D


def attention_projections(model: Any) -> tuple[str, ...]:
    """The linear children of the model's attention modules, by name.

    Short names (``q_proj``) when no module outside attention has the same last name; else
    the full module names, so that a name shared with an MLP layer adapts attention only.
    """
    linear = _linear_types()
    full: list[str] = []
    for path, module in model.named_modules():
        if not type(module).__name__.endswith("Attention"):
            continue
        for child, sub in module.named_children():
            if isinstance(sub, linear):
                full.append(f"{path}.{child}" if path else child)
    return _short_names(model, full)


def _short_names(model: Any, paths: Sequence[str]) -> tuple[str, ...]:
    """The last names of ``paths`` (``q_proj``), first seen first, when no other linear layer
    of the model has one of them; else the full paths, so that peft adapts these alone."""
    short = dict.fromkeys(path.rsplit(".", 1)[-1] for path in paths)
    chosen = set(paths)
    shared = {
        path.rsplit(".", 1)[-1]
        for path, module in model.named_modules()
        if isinstance(module, _linear_types()) and path not in chosen
    }
    return tuple(paths) if shared & short.keys() else tuple(short)


def linear_layers(model: Any) -> tuple[str, ...]:
    """Every linear layer's full name but the output head's and the MoE experts' and routers'."""
    linear = _linear_types()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return tuple(
        path
        for path, module in model.named_modules()
        if isinstance(module, linear) and module is not head and not MOE_PART.search(path)
    )


def _check_present(model: Any, names: Sequence[str]) -> None:
    paths = [path for path, _ in model.named_modules()]
    for name in names:
        if not any(path == name or path.endswith("." + name) for path in paths):
            raise ValueError(
                f"train.target_modules names {name!r}, which is no module of this model: "
                "expected module names such as "
                f"{sorted({p.rsplit('.', 1)[-1] for p in paths if '.' in p})[:8]}"
            )
