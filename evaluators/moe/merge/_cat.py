"""``cat``: the exact merge, B factors side by side and scaled A factors stacked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from evaluators.moe.merge._adapter import (
    LoraAdapter,
    check_compatible,
    check_weights,
    factor_suffixes,
)
from evaluators.moe.merge._base import MergeMethod

if TYPE_CHECKING:
    import torch


def cat_merge(adapters: Sequence[LoraAdapter], weights: Sequence[float]) -> LoraAdapter:
    """The exact weighted merge: B factors side by side, scaled A factors stacked.

    Sources may have different ranks; each source's scaling (LoRA or rsLoRA) is folded into
    its A factor, and the result has ``r = lora_alpha = sum(r_i)``, so its scaling is 1.

    Args:
        adapters: The sources (see :func:`check_compatible`).
        weights: One weight per source.

    Returns:
        The merged adapter, whose delta equals ``sum_i w_i * delta_i`` up to float rounding.
    """
    from dataclasses import replace

    import torch

    values = check_weights(adapters, weights)
    check_compatible(adapters)
    per_source = [adapter.factors() for adapter in adapters]
    rank = sum(adapter.config.r for adapter in adapters)
    tensors: dict[str, torch.Tensor] = {}
    for module in per_source[0]:
        a_end, b_end = factor_suffixes(adapters[0], module)
        tensors[module + a_end] = torch.cat(
            [
                factors[module][0] * (w * adapter.scaling)
                for factors, adapter, w in zip(per_source, adapters, values, strict=True)
            ],
            dim=0,
        )
        tensors[module + b_end] = torch.cat([factors[module][1] for factors in per_source], dim=1)
    config = replace(
        adapters[0].config,
        r=rank,
        lora_alpha=rank,
        use_rslora=False,
        rank_pattern={},
        alpha_pattern={},
    )
    return LoraAdapter(config=config, tensors=tensors)


class CatMerge(MergeMethod):
    """Exact low-rank concatenation (see the module docstring); no base model needed."""

    name = "cat"
    exact = True

    def merge_adapters(
        self, adapters: Sequence[LoraAdapter], weights: Sequence[float]
    ) -> LoraAdapter:
        """See :func:`cat_merge`."""
        return cat_merge(adapters, weights)
