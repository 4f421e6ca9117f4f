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
:data:`MERGE_METHODS` is the registry, :func:`get_merge_method` builds one by name.
"""

from __future__ import annotations

import abc
import copy
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import storage

if TYPE_CHECKING:
    import torch

MERGE_INFO_NAME = "merge.json"
"""File beside the adapter that records how it was merged."""

DEFAULT_DENSITY = 0.5
"""Share of each task vector that ties / dare_ties keep (peft's examples use 0.2 to 0.7)."""

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
        ValueError: If the directory holds no adapter config, or one that is not LoRA.
    """
    from peft import LoraConfig
    from peft.utils import CONFIG_NAME, load_peft_weights

    path = Path(path)
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise ValueError(f"{path} is not a peft adapter directory: no {CONFIG_NAME}")
    peft_type = json.loads(config_file.read_text()).get("peft_type")
    if peft_type != "LORA":
        raise ValueError(f"{config_file}: peft_type={peft_type!r}, only 'LORA' can be merged")
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


def _check_weights(adapters: Sequence[Any], weights: Sequence[float]) -> list[float]:
    if len(weights) != len(adapters):
        raise ValueError(f"{len(adapters)} sources but {len(weights)} weights: expected one each")
    values = [float(w) for w in weights]
    for w in values:
        if not math.isfinite(w):
            raise ValueError(f"invalid merge weight {w!r}: expected a finite number")
    return values


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

    values = _check_weights(adapters, weights)
    check_compatible(adapters)
    per_source = [adapter.factors() for adapter in adapters]
    rank = sum(adapter.config.r for adapter in adapters)
    tensors: dict[str, torch.Tensor] = {}
    for module in per_source[0]:
        a_end, b_end = _suffixes_of(adapters[0], module)
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


def _suffixes_of(adapter: LoraAdapter, module: str) -> tuple[str, str]:
    for a_end, b_end in _FACTOR_SUFFIXES:
        if module + a_end in adapter.tensors:
            return a_end, b_end
    raise KeyError(module)


def weighted_deltas(
    adapters: Sequence[LoraAdapter], weights: Sequence[float]
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(module, sum_i w_i * scaling_i * B_i @ A_i)``, one module at a time (bounded memory)."""
    values = _check_weights(adapters, weights)
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


def write_adapter(adapter: LoraAdapter, out_dir: str | Path, info: Mapping[str, Any]) -> Path:
    """Save an adapter in peft's format (config + safetensors) plus ``merge.json``, atomically.

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
    return out


class MergeMethod(abc.ABC):
    """How k adapters become one.

    Contract of :meth:`merge`: read the source adapter directories, write a complete peft
    adapter directory at ``out_dir`` (replacing any previous one) whose delta is the weighted
    sum of the sources' deltas (exactly for ``cat``, approximately for the others), and
    return ``out_dir``. A merge depends only on its own sources and weights, never on an
    earlier merge made by the same object.
    """

    name: ClassVar[str]
    """The registry key."""
    exact: ClassVar[bool] = False
    """Whether the merged delta equals the weighted sum up to float rounding."""

    @abc.abstractmethod
    def merge_adapters(
        self, adapters: Sequence[LoraAdapter], weights: Sequence[float]
    ) -> LoraAdapter:
        """Merge adapters already in memory (the benchmark times this part)."""

    def merge(
        self, sources: Sequence[str | Path], weights: Sequence[float], out_dir: str | Path
    ) -> Path:
        """Merge the adapters saved in ``sources`` with ``weights`` into ``out_dir``."""
        values = _check_weights(sources, weights)
        merged = self.merge_adapters([read_adapter(s) for s in sources], values)
        info = {
            "method": self.name,
            "sources": [str(Path(s).resolve()) for s in sources],
            "weights": values,
            "rank": merged.config.r,
        }
        return write_adapter(merged, out_dir, info)


class CatMerge(MergeMethod):
    """Exact low-rank concatenation (see the module docstring); no base model needed."""

    name = "cat"
    exact = True

    def merge_adapters(
        self, adapters: Sequence[LoraAdapter], weights: Sequence[float]
    ) -> LoraAdapter:
        """See :func:`cat_merge`."""
        return cat_merge(adapters, weights)


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

        values = _check_weights(adapters, weights)
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
