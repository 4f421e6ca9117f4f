"""peft's ``add_weighted_adapter`` combinations (``linear``, ``ties``, ``dare_ties``, ``svd``),
run on a loaded base model; approximate, for comparison with ``cat``."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

from evaluators.moe.merge._adapter import LoraAdapter, check_compatible, check_weights
from evaluators.moe.merge._base import MergeMethod

DEFAULT_DENSITY = 0.5
"""Share of each task vector that ties / dare_ties keep (peft's examples use 0.2 to 0.7)."""


class PeftMerge(MergeMethod):
    """A peft ``add_weighted_adapter`` combination, run on a loaded base model.

    Each merge wraps the model, loads the sources under fresh names, merges into a fresh name
    (peft silently does nothing if that name exists, so it is checked before and after),
    reads the merged tensors and ``unload()``s the LoRA layers, leaving the base model as it
    was. Merges are therefore independent of each other.

    Args:
        model: The base transformers model the adapters were trained on.
        density: Share kept by ``ties`` / ``dare_ties``, in (0, 1].
        svd_rank: Rank of the ``svd`` result; None is peft's default, the largest source rank.
        seed: Seed of ``dare_ties``' random drop, so a merge is reproducible.
    """

    combination_type: ClassVar[str]
    same_rank: ClassVar[bool] = True
    """Whether peft needs every source to have the same rank."""
    _names: ClassVar[itertools.count] = itertools.count()

    def __init__(
        self,
        model: Any,
        *,
        density: float = DEFAULT_DENSITY,
        svd_rank: int | None = None,
        seed: int = 0,
    ) -> None:
        if model is None:
            raise ValueError(f"merge method {self.name!r} needs the base model (model=None given)")
        if not 0 < density <= 1:
            raise ValueError(f"invalid density={density!r}: expected a number in (0, 1]")
        if svd_rank is not None and svd_rank < 1:
            raise ValueError(f"invalid svd_rank={svd_rank!r}: expected None or an integer >= 1")
        self.model = model
        self.density = density
        self.svd_rank = svd_rank
        self.seed = seed

    def merge_adapters(
        self, adapters: Sequence[LoraAdapter], weights: Sequence[float]
    ) -> LoraAdapter:
        """Load the adapters into the model under fresh names and let peft merge them."""
        import torch
        from peft import PeftModel
        from peft.utils import get_peft_model_state_dict

        values = check_weights(adapters, weights)
        check_compatible(adapters)
        self._check_peft_limits(adapters)
        run = next(self._names)
        names = [f"merge{run}_source{i}" for i in range(len(adapters))]
        merged_name = f"merge{run}_result"
        # Deep copies: peft resolves target_modules in the config it is given, in place.
        peft_model = PeftModel(self.model, copy.deepcopy(adapters[0].config), names[0])
        try:
            for name, adapter in zip(names, adapters, strict=True):
                if name != names[0]:
                    peft_model.add_adapter(name, copy.deepcopy(adapter.config))
                _load_tensors(peft_model, adapter, name)
            if merged_name in peft_model.peft_config:
                raise RuntimeError(f"adapter name {merged_name!r} already exists")
            options: dict[str, Any] = {"combination_type": self.combination_type}
            if self.combination_type in ("ties", "dare_ties"):
                options["density"] = self.density
            if self.combination_type == "svd":
                options["svd_rank"] = self.svd_rank
            with torch.random.fork_rng():
                torch.manual_seed(self.seed)
                peft_model.add_weighted_adapter(names, values, merged_name, **options)
            if merged_name not in peft_model.peft_config:
                raise RuntimeError(f"peft's add_weighted_adapter did not create {merged_name!r}")
            tensors = get_peft_model_state_dict(
                peft_model, adapter_name=merged_name, save_embedding_layers=False
            )
            config = peft_model.peft_config[merged_name]
        finally:
            peft_model.unload()
        return LoraAdapter(
            config=config,
            tensors={key: value.detach().float().clone() for key, value in tensors.items()},
        )

    def _check_peft_limits(self, adapters: Sequence[LoraAdapter]) -> None:
        for adapter in adapters:
            if adapter.config.use_rslora:
                raise ValueError(
                    f"{adapter.source}: use_rslora=True, and peft 0.21.2's "
                    f"add_weighted_adapter saves a wrong scaling for rsLoRA (sqrt(r) instead "
                    f"of 1); use method 'cat', which folds the scaling in exactly"
                )
        ranks = sorted({adapter.config.r for adapter in adapters})
        if self.same_rank and len(ranks) > 1:
            raise ValueError(
                f"merge method {self.name!r} needs sources of one rank, got ranks {ranks}; "
                "use 'cat' or 'svd'"
            )


def _load_tensors(peft_model: Any, adapter: LoraAdapter, name: str) -> None:
    """Load an adapter's saved tensors into the named (freshly added) adapter slot."""
    from peft.utils import set_peft_model_state_dict

    result: Any = set_peft_model_state_dict(peft_model, dict(adapter.tensors), adapter_name=name)
    missing = [key for key in result.missing_keys if f".{name}." in key or key.endswith(name)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{adapter.source} does not fit the base model: missing {missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]}"
        )


class LinearMerge(PeftMerge):
    """peft's ``linear``: weighted sums of the A factors and of the B factors (approximate)."""

    name = "linear"
    combination_type = "linear"


class TiesMerge(PeftMerge):
    """peft's ``ties``: trim to ``density``, elect signs, average agreeing entries."""

    name = "ties"
    combination_type = "ties"


class DareTiesMerge(PeftMerge):
    """peft's ``dare_ties``: random drop to ``density`` with rescaling, then ties."""

    name = "dare_ties"
    combination_type = "dare_ties"


class SvdMerge(PeftMerge):
    """peft's default ``svd``: dense weighted delta per module, truncated SVD to ``svd_rank``."""

    name = "svd"
    combination_type = "svd"
    same_rank = False
