"""Benchmark: the MoE merge of every persona of cluster 4, exact cat vs peft's default svd.

Each of the demo's cluster-4 personas (72 of 200) is merged from its router's top-k personas
(k=5, softmax weights, own adapter included), once with our ``cat`` and once with peft's
``svd``, side by side in one invocation, on identical inputs:

  A) the tiny model's adapters: one real peft LoRA adapter per persona, saved with
     ``save_pretrained`` (the training recipe's LoraConfig, random non-zero factors). Both
     methods run through ``evaluators.moe.merge`` (svd through peft's ``add_weighted_adapter``
     on the loaded tiny model), for all targets: the merge alone on sources in memory, and
     file to file (reading the sources, writing the merged adapter).
  B) adapters with the shapes of Qwen2.5-0.5B (24 layers, hidden 896, intermediate 4864,
     2 KV heads of 64; LoRA rank 8 on q/k/v/o and gate/up/down), random factors, in memory.
     cat is timed for all targets. peft's svd needs the 0.5B model loaded, so its math is
     timed directly instead, with peft's own ``task_arithmetic`` and the same SVD call as
     ``LoraModel._svd_generalized_task_arithmetic_weighted_adapter``, on a share of the work
     (``--svd-targets`` targets, ``--svd-layers`` of their 24 identical layers) and
     extrapolated: a whole 0.5B target takes minutes on one CPU core.

Error: the largest absolute difference, over targets and modules, between a method's merged
delta (scaling * B @ A) and the dense weighted sum of the sources' deltas.

Run:  .venv/bin/python benchmarks/bench_merge.py [--k 5] [--svd-targets 1] [--svd-layers 2]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evaluators.moe.merge import (
    CatMerge,
    LoraAdapter,
    SvdMerge,
    cat_merge,
    max_delta_error,
    read_adapter,
    weighted_deltas,
)
from evaluators.moe.router import Route, route

QWEN_LAYERS = 24
"""Decoder layers of Qwen2.5-0.5B."""
QWEN_MODULES = {
    "self_attn.q_proj": (896, 896),
    "self_attn.k_proj": (896, 128),
    "self_attn.v_proj": (896, 128),
    "self_attn.o_proj": (896, 896),
    "mlp.gate_proj": (896, 4864),
    "mlp.up_proj": (896, 4864),
    "mlp.down_proj": (4864, 896),
}
"""Qwen2.5-0.5B's linear layers that LoRA targets: (in_features, out_features), per layer."""


@dataclass
class Result:
    """One method on one model shape."""

    seconds: float
    """Time of the merges that were run."""
    timed_share: float
    """Share of the whole work that was timed (1: every target, every layer)."""
    note: str
    """How the time was measured, for the table."""
    error: float
    """Largest absolute error of the merged delta against the dense weighted sum."""
    scale: float
    """Largest absolute entry of those dense sums, to judge the error by."""

    @property
    def total(self) -> float:
        """Seconds for every target (extrapolated when only a share was timed)."""
        return self.seconds / self.timed_share


def cluster_routes(k: int) -> list[Route]:
    """Routes of the demo's cluster 4, within the cluster, as the demo clusters it."""
    from trainers.clustering import cluster_embeddings
    from trainers.embedding import embed
    from trainers.tiny.generator import generate_personas

    texts = list({r["persona_id"]: str(r["persona"]) for r in generate_personas()}.values())
    vectors = embed(texts)
    labels = cluster_embeddings(vectors, 5, seed=0).labels
    members = [i for i, label in enumerate(labels) if label == 4]
    return route(vectors[members], k=k)


def tiny_adapters(root: Path, n: int) -> tuple[Any, list[Path]]:
    """The tiny base model and n saved LoRA adapters with the training recipe's config."""
    from peft import get_peft_model

    from trainers.base_model import load_base_model
    from trainers.config import ModelConfig, TrainConfig
    from trainers.recipe import lora_config

    model = load_base_model(ModelConfig(device="cpu")).model
    config = lora_config(TrainConfig())
    config.init_lora_weights = False
    paths = []
    for i in range(n):
        torch.manual_seed(i)
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, 0.02)
        peft_model.save_pretrained(str(root / f"persona{i:03d}"))
        model = peft_model.unload()
        paths.append(root / f"persona{i:03d}")
    return model, paths


def bench_tiny(routes: Sequence[Route], root: Path) -> list[tuple[Result, Result]]:
    """A) every target with cat and with peft's svd: the merge alone, then file to file.

    The merge alone starts from the sources in memory and ends with the merged tensors (for
    svd: wrap the model, load the sources, ``add_weighted_adapter``, read, ``unload``). File
    to file adds what both methods share: reading the sources and writing the merged adapter
    (``write_adapter``, which fsyncs).
    """
    model, paths = tiny_adapters(root / "sources", len(routes))
    adapters = [read_adapter(p) for p in paths]
    scale = largest_entry(routes, adapters)
    alone, files = [], []
    for method in (CatMerge(), SvdMerge(model)):
        started = time.perf_counter()
        merged = [
            method.merge_adapters([adapters[s] for s in r.sources], r.weights) for r in routes
        ]
        seconds = time.perf_counter() - started
        error = max(
            max_delta_error(m, [adapters[s] for s in r.sources], r.weights)
            for m, r in zip(merged, routes, strict=True)
        )
        alone.append(Result(seconds, 1.0, f"{len(routes)} merges", error, scale))
        started = time.perf_counter()
        for r in routes:
            method.merge(
                [paths[s] for s in r.sources], r.weights, root / method.name / f"{r.target:03d}"
            )
        seconds = time.perf_counter() - started
        error = max(
            max_delta_error(
                read_adapter(root / method.name / f"{r.target:03d}"),
                [adapters[s] for s in r.sources],
                r.weights,
            )
            for r in routes
        )
        files.append(Result(seconds, 1.0, f"{len(routes)} merges", error, scale))
    return [(alone[0], alone[1]), (files[0], files[1])]


def qwen_shaped_adapter(seed: int, rank: int = 8) -> LoraAdapter:
    """A LoRA adapter with Qwen2.5-0.5B's shapes and random factors (kaiming-like A)."""
    from peft import LoraConfig

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(QWEN_LAYERS):
        for module, (fan_in, fan_out) in QWEN_MODULES.items():
            key = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, fan_in, generator=generator) / (
                math.sqrt(fan_in)
            )
            tensors[f"{key}.lora_B.weight"] = 0.02 * torch.randn(fan_out, rank, generator=generator)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=[m.split(".")[1] for m in QWEN_MODULES],
        base_model_name_or_path="Qwen/Qwen2.5-0.5B",
    )
    return LoraAdapter(config=config, tensors=tensors, source=f"qwen-shaped-{seed}")


def svd_merge_math(adapters: Sequence[LoraAdapter], weights: Sequence[float]) -> LoraAdapter:
    """peft's svd merge without a model: the ops of ``_svd_generalized_task_arithmetic_...``.

    Per module: every source's delta (peft's ``get_delta_weight``: scaling * B @ A), their
    weighted sum with peft's ``task_arithmetic``, ``torch.linalg.svd(full_matrices=True)``
    (peft's default), truncated to the largest source rank (peft's default ``svd_rank``).
    """
    from dataclasses import replace

    from peft.utils.merge_utils import task_arithmetic

    rank = max(a.config.r for a in adapters)
    factors = [a.factors() for a in adapters]
    tensors = {}
    for module in factors[0]:
        deltas = [
            a.scaling * (f[module][1] @ f[module][0])
            for a, f in zip(adapters, factors, strict=True)
        ]
        delta = task_arithmetic(deltas, torch.tensor(list(weights)))
        u, s, vh = torch.linalg.svd(delta, full_matrices=True)
        tensors[f"{module}.lora_A.weight"] = vh[:rank, :]
        tensors[f"{module}.lora_B.weight"] = u[:, :rank] @ torch.diag(s[:rank])
    config = replace(adapters[0].config, r=rank, lora_alpha=rank)
    return LoraAdapter(config=config, tensors=tensors, source="svd")


def first_layers(adapter: LoraAdapter, layers: int) -> LoraAdapter:
    """The same adapter restricted to its first decoder layers (the tensors are shared)."""
    keep = tuple(f".layers.{i}." for i in range(layers))
    tensors = {k: v for k, v in adapter.tensors.items() if any(p in k for p in keep)}
    return LoraAdapter(config=adapter.config, tensors=tensors, source=adapter.source)


def bench_qwen(routes: Sequence[Route], svd_targets: int, svd_layers: int) -> tuple[Result, Result]:
    """B) in-memory merges on 0.5B-shaped adapters: cat for all targets, svd for a share.

    svd is timed on the first ``svd_layers`` of 24 layers of the first ``svd_targets`` targets
    and extrapolated; every layer has the same shapes, so the time per layer is the same.
    """
    adapters = [qwen_shaped_adapter(seed) for seed in range(len(routes))]
    checked = routes[:svd_targets]

    def sources(r: Route) -> list[LoraAdapter]:
        return [adapters[s] for s in r.sources]

    started = time.perf_counter()
    for r in routes:
        cat_merge(sources(r), r.weights)
    cat_seconds = time.perf_counter() - started
    cat_error = max(
        max_delta_error(cat_merge(sources(r), r.weights), sources(r), r.weights) for r in checked
    )
    size = largest_entry(checked, adapters)
    cat = Result(cat_seconds, 1.0, f"{len(routes)} merges, memory", cat_error, size)

    svd_seconds, svd_error = 0.0, 0.0
    for r in checked:
        part = [first_layers(a, svd_layers) for a in sources(r)]
        started = time.perf_counter()
        merged = svd_merge_math(part, r.weights)
        svd_seconds += time.perf_counter() - started
        svd_error = max(svd_error, max_delta_error(merged, part, r.weights))
    share = len(checked) / len(routes) * svd_layers / QWEN_LAYERS
    note = f"timed {len(checked)} x {svd_layers}/{QWEN_LAYERS} layers, extrapolated"
    return cat, Result(svd_seconds, share, note, svd_error, size)


def largest_entry(routes: Sequence[Route], adapters: Sequence[LoraAdapter]) -> float:
    """Largest absolute entry of the dense weighted sums: what the errors compare with."""
    return max(
        float(d.abs().max())
        for r in routes
        for _module, d in weighted_deltas([adapters[s] for s in r.sources], r.weights)
    )


def row(name: str, cat: Result, svd: Result) -> str:
    """One line of the markdown table."""
    return (
        f"| {name} | {cat.total:.2f} s ({cat.note}) | {svd.total:.1f} s ({svd.note}) "
        f"| {svd.total / cat.total:.0f}x | {cat.error:.1e} | {svd.error:.1e} | {cat.scale:.1e} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5, help="sources per target (default 5)")
    parser.add_argument(
        "--svd-targets", type=int, default=1, help="0.5B-shaped targets timed with svd (1)"
    )
    parser.add_argument(
        "--svd-layers", type=int, default=2, help="of their 24 layers, how many (2)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared, busy machine more threads spin and time noise)",
    )
    args = parser.parse_args()
    if not 1 <= args.svd_layers <= QWEN_LAYERS:
        parser.error(f"--svd-layers {args.svd_layers}: expected 1 to {QWEN_LAYERS}")
    torch.set_num_threads(args.threads)
    routes = cluster_routes(args.k)
    if not 1 <= args.svd_targets <= len(routes):
        parser.error(f"--svd-targets {args.svd_targets}: expected 1 to {len(routes)}")
    with tempfile.TemporaryDirectory() as tmp:
        tiny = bench_tiny(routes, Path(tmp))
    qwen = bench_qwen(routes, args.svd_targets, args.svd_layers)
    print(
        f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}; "
        f"cluster 4: {len(routes)} personas, each merged from its top-{args.k}"
    )
    print(
        "| adapters | cat | svd (peft) | svd / cat | cat max error | svd max error "
        "| largest delta entry |"
    )
    print("|---|---|---|---|---|---|---|")
    print(row("tiny model (rank 8, q/v): merge alone", *tiny[0]))
    print(row("tiny model (rank 8, q/v): file to file", *tiny[1]))
    print(row("Qwen2.5-0.5B shapes (rank 8, 7 modules x 24 layers)", *qwen))
    merges = (tiny[0], qwen)
    goal = all(svd.total >= 100 * cat.total and cat.error <= 1e-5 for cat, svd in merges)
    print(f"goal (merge alone: cat >= 100x faster, exact to 1e-5): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
