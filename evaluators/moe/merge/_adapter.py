"""LoRA adapters in memory: read, check, write, and their weighted deltas (the reference every
merge is measured against)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import storage
from trainers.adapter_check import ADAPTER_CONFIG, read_adapter_config

if TYPE_CHECKING:
    import torch

MERGE_INFO_NAME = "merge.json"
"""File beside the adapter that records how it was merged."""

_FACTOR_SUFFIXES = (
    (".lora_A.weight", ".lora_B.weight"),
    (".lora_embedding_A", ".lora_embedding_B"),
)
"""(A, B) key endings in a saved adapter: linear or conv layers, then embedding layers."""


@dataclass(frozen=True)
class LoraAdapter:
    """A LoRA adapter in memory: its peft config and its saved tensors."""

    config: Any
    """The ``peft.LoraConfig``."""
    tensors: Mapping[str, torch.Tensor]
    """The state dict as saved (keys without adapter name), float32."""
    source: str = "<memory>"
    """Where it was read from, for error messages."""

    @property
    def scaling(self) -> float:
        """The factor peft applies to ``B @ A``: ``alpha / r``, or ``alpha / sqrt(r)`` (rsLoRA)."""
        r = self.config.r
        return self.config.lora_alpha / (math.sqrt(r) if self.config.use_rslora else r)

    def factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{module: (A, B)}`` for every LoRA module, in key order.

        Raises:
            ValueError: If a tensor is not a LoRA factor (DoRA magnitudes, biases, modules to
                save), a factor lacks its partner, or a rank differs from ``config.r``.
        """
        pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for key in sorted(self.tensors):
            for a_end, b_end in _FACTOR_SUFFIXES:
                if key.endswith(a_end):
                    module = key[: -len(a_end)]
                    b_key = module + b_end
                    if b_key not in self.tensors:
                        raise ValueError(f"{self.source}: {key} has no partner {b_key}")
                    pairs[module] = (self.tensors[key], self.tensors[b_key])
                    break
                if key.endswith(b_end):
                    break
            else:
                raise ValueError(
                    f"{self.source}: tensor {key!r} is not a LoRA factor; only plain LoRA "
                    "adapters (no DoRA, bias or modules_to_save) can be merged"
                )
        for module, (a, _b) in pairs.items():
            if a.shape[0] != self.config.r:
                raise ValueError(
                    f"{self.source}: {module} has rank {a.shape[0]} but the config says "
                    f"r={self.config.r}"
                )
        return pairs

    def deltas(self) -> dict[str, torch.Tensor]:
        """Dense ``scaling * B @ A`` per module, in the factors' orientation (out x in)."""
        return {
            module: self.scaling * (b.flatten(1) @ a.flatten(1))
            for module, (a, b) in self.factors().items()
        }


def read_adapter(path: str | Path) -> LoraAdapter:
    """Read a saved peft LoRA adapter directory (config and weights) onto the CPU.

    Raises:
        AdapterError: If the directory holds no adapter config, or one that is not valid JSON
            (too deeply nested included) or not LoRA; the message names the file.
    """
    path = Path(path)
    read_adapter_config(path / ADAPTER_CONFIG)  # before peft parses it: names the file at fault
    from peft import LoraConfig
    from peft.utils import load_peft_weights

    tensors = load_peft_weights(str(path), device="cpu")
    return LoraAdapter(
        config=LoraConfig.from_pretrained(str(path)),
        tensors={key: value.float() for key, value in tensors.items()},
        source=str(path),
    )


def check_compatible(adapters: Sequence[LoraAdapter]) -> None:
    """Check that adapters can be merged: same base model, modules, shapes and layout.

    Raises:
        ValueError: Naming the first adapter that differs from the first one, and how.
    """
    if not adapters:
        raise ValueError("no adapters to merge: expected at least one source")
    first = adapters[0]
    first_modules = first.factors()
    for adapter in adapters:
        config = adapter.config
        if config.use_dora:
            raise ValueError(f"{adapter.source}: use_dora=True; DoRA adapters cannot be merged")
        if config.rank_pattern or config.alpha_pattern:
            raise ValueError(
                f"{adapter.source}: rank_pattern/alpha_pattern are set; only one rank and "
                "alpha per adapter are supported"
            )
        if config.base_model_name_or_path != first.config.base_model_name_or_path:
            raise ValueError(
                f"{adapter.source} was trained on base model "
                f"{config.base_model_name_or_path!r}, but {first.source} on "
                f"{first.config.base_model_name_or_path!r}: merge adapters of one base model"
            )
        if config.fan_in_fan_out != first.config.fan_in_fan_out:
            raise ValueError(
                f"{adapter.source}: fan_in_fan_out={config.fan_in_fan_out}, but "
                f"{first.source} has {first.config.fan_in_fan_out}"
            )
        modules = adapter.factors()
        if modules.keys() != first_modules.keys():
            differ = sorted(modules.keys() ^ first_modules.keys())
            raise ValueError(
                f"{adapter.source} and {first.source} adapt different modules "
                f"(e.g. {differ[:3]}): merge adapters with the same target modules"
            )
        for module, (a, b) in modules.items():
            a0, b0 = first_modules[module]
            if (
                a.shape[1:] != a0.shape[1:]
                or b.shape[:1] + b.shape[2:] != b0.shape[:1] + b0.shape[2:]
            ):
                raise ValueError(
                    f"{adapter.source}: {module} has factors {tuple(a.shape)}, {tuple(b.shape)} "
                    f"that do not fit {tuple(a0.shape)}, {tuple(b0.shape)} of {first.source}"
                )


def check_weights(adapters: Sequence[Any], weights: Sequence[float]) -> list[float]:
    """The weights as floats, one per source, each finite.

    Raises:
        ValueError: If the counts differ or a weight is not finite.
    """
    if len(weights) != len(adapters):
        raise ValueError(f"{len(adapters)} sources but {len(weights)} weights: expected one each")
    values = [float(w) for w in weights]
    for w in values:
        if not math.isfinite(w):
            raise ValueError(f"invalid merge weight {w!r}: expected a finite number")
    return values


def factor_suffixes(adapter: LoraAdapter, module: str) -> tuple[str, str]:
    """The (A, B) key endings of ``module`` in ``adapter``'s tensors (linear or embedding)."""
    for a_end, b_end in _FACTOR_SUFFIXES:
        if module + a_end in adapter.tensors:
            return a_end, b_end
    raise KeyError(module)


def weighted_deltas(
    adapters: Sequence[LoraAdapter], weights: Sequence[float]
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(module, sum_i w_i * scaling_i * B_i @ A_i)``, one module at a time (bounded memory)."""
    values = check_weights(adapters, weights)
    factors = [adapter.factors() for adapter in adapters]
    for module in factors[0]:
        total = None
        for adapter, pairs, w in zip(adapters, factors, values, strict=True):
            a, b = pairs[module]
            delta = (w * adapter.scaling) * (b.flatten(1) @ a.flatten(1))
            total = delta if total is None else total + delta
        assert total is not None
        yield module, total


def weighted_delta_sum(
    adapters: Sequence[LoraAdapter], weights: Sequence[float]
) -> dict[str, torch.Tensor]:
    """The reference: ``sum_i w_i * scaling_i * B_i @ A_i`` per module, dense."""
    return dict(weighted_deltas(adapters, weights))


def max_delta_error(
    merged: LoraAdapter, adapters: Sequence[LoraAdapter], weights: Sequence[float]
) -> float:
    """Largest absolute difference between the merged delta and the dense weighted sum.

    Computed module by module, so a 0.5B-sized adapter needs one module's dense delta at a time.
    """
    got = merged.factors()
    modules = adapters[0].factors().keys() if adapters else got.keys()
    if got.keys() != modules:
        raise ValueError(
            f"merged adapter adapts {len(got)} modules, the sources {len(modules)}: "
            f"e.g. {sorted(got.keys() ^ modules)[:3]}"
        )
    error = 0.0
    for module, reference in weighted_deltas(adapters, weights):
        a, b = got[module]
        delta = merged.scaling * (b.flatten(1) @ a.flatten(1))
        error = max(error, float((delta - reference).abs().max()))
    return error


def write_adapter(
    adapter: LoraAdapter, out_dir: str | Path, info: Mapping[str, Any], *, card: str | None = None
) -> Path:
    """Save an adapter in peft's format (config + safetensors) plus ``merge.json`` and the model
    ``card`` (``README.md``, where given), atomically.

    A previous directory at ``out_dir`` is replaced only once the new one is complete.
    """
    from peft.utils import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import save_file

    out = Path(out_dir)
    with storage.atomic_directory(out) as tmp:
        adapter.config.save_pretrained(str(tmp))
        save_file(
            {key: value.contiguous() for key, value in adapter.tensors.items()},
            str(tmp / SAFETENSORS_WEIGHTS_NAME),
            metadata={"format": "pt"},
        )
        (tmp / MERGE_INFO_NAME).write_text(json.dumps(dict(info), indent=2) + "\n")
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
    return out
