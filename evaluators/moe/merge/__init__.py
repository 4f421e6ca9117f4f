"""Weighted merges of k LoRA adapters into one peft adapter: the MoE sparse merge.

A LoRA module adds ``delta = scaling * B @ A`` to a base weight. The weighted sum of k such
deltas is itself a LoRA of rank ``sum(r_i)``::

    sum_i w_i * s_i * B_i @ A_i  =  [B_1 ... B_k] @ [w_1 s_1 A_1; ...; w_k s_k A_k]

so ``cat`` (ours) puts the B factors side by side, stacks the scaled A factors, and saves the
result with ``lora_alpha = r`` (scaling 1). It is exact and needs no SVD, no dense delta and no
base model: it reads and writes adapter files only. We write it ourselves because peft's own
``cat`` runs inside a loaded PeftModel and, with ``use_rslora=True``, saves a wrong scaling in
peft 0.21.2 (``lora_alpha = r`` then means scaling ``sqrt(r)``); here each source's scaling,
rsLoRA or not, is folded into its A factor and the merged adapter uses plain LoRA scaling.

For comparison, ``linear``, ``ties``, ``dare_ties`` and ``svd`` delegate to peft's
``add_weighted_adapter`` on a loaded base model. Every method writes a directory that plain
``PeftModel.from_pretrained`` loads, plus ``merge.json`` naming the sources and weights.

The family follows the optuna pattern: :class:`MergeMethod` states the contract,
:data:`MERGE_METHODS` is the registry, :func:`get_merge_method` builds one by name. The
private modules hold the parts: ``_adapter`` (read, check and write adapters; weighted deltas),
``_base`` (the contract), ``_cat`` and ``_peft`` (the methods).
"""

from __future__ import annotations

from typing import Any

from evaluators.moe.merge._adapter import (
    MERGE_INFO_NAME,
    LoraAdapter,
    check_compatible,
    max_delta_error,
    read_adapter,
    weighted_delta_sum,
    weighted_deltas,
    write_adapter,
)
from evaluators.moe.merge._base import MergeMethod
from evaluators.moe.merge._cat import CatMerge, cat_merge
from evaluators.moe.merge._peft import (
    DEFAULT_DENSITY,
    DareTiesMerge,
    LinearMerge,
    PeftMerge,
    SvdMerge,
    TiesMerge,
)

MERGE_METHODS: dict[str, type[MergeMethod]] = {
    method.name: method for method in (CatMerge, LinearMerge, TiesMerge, DareTiesMerge, SvdMerge)
}
"""Merge methods by name; ``cat`` is the default."""


def get_merge_method(name: str = "cat", *, model: Any = None, **options: Any) -> MergeMethod:
    """Build a merge method by name.

    Args:
        name: A key of :data:`MERGE_METHODS`.
        model: The loaded base model; needed by every method except ``cat``.
        **options: ``density``, ``svd_rank``, ``seed`` for the peft methods.

    Raises:
        ValueError: If the name is unknown or an option does not apply.
    """
    if name not in MERGE_METHODS:
        raise ValueError(f"unknown merge method {name!r}: expected one of {sorted(MERGE_METHODS)}")
    method = MERGE_METHODS[name]
    if method is CatMerge:
        if options:
            raise ValueError(f"merge method 'cat' takes no options, got {sorted(options)}")
        return CatMerge()
    assert issubclass(method, PeftMerge)
    return method(model, **options)


__all__ = [
    "DEFAULT_DENSITY",
    "MERGE_INFO_NAME",
    "MERGE_METHODS",
    "CatMerge",
    "DareTiesMerge",
    "LinearMerge",
    "LoraAdapter",
    "MergeMethod",
    "PeftMerge",
    "SvdMerge",
    "TiesMerge",
    "cat_merge",
    "check_compatible",
    "get_merge_method",
    "max_delta_error",
    "read_adapter",
    "weighted_delta_sum",
    "weighted_deltas",
    "write_adapter",
]
