"""Benchmark: LoRA trials and evaluation of real model shapes on one GPU (the GPU check).

Two random-init models built in code from real configurations (no download): a
Qwen2.5-0.5B-shaped Qwen2 (hidden 896, 24 layers, 14 heads, 2 key-value heads, MLP 4864, tied
embeddings, its 151,936-token vocabulary) and a Llama-3-8B-shaped Llama (hidden 4096, 32
layers, 32 heads, 8 key-value heads, MLP 14,336, 128,256 tokens). The dry run
(``--dry-run``, ``GPU_CHECK_DRY=1``) builds the same shapes scaled to hidden 64 and 2 layers
on the CPU, keeping the real vocabularies, so the output layer and the loss cost what they cost
on a real model. Every model is built on its device in bf16 where the card supports it and
runs with the tiny model's tokenizer (its ids are a subset of the vocabulary). For each model,
in one process, as a worker and an evaluator run them:

- training (:func:`trainers.recipe.train_lora`, default data settings: grouped by length):
  rows of Synthetic-Persona-Chat's validation split (tests/data), batch 8 of the search space
  (2 in the dry run, its rows cut to 128 tokens). Only the steps are timed: hooks on the
  decoder note the start of every training forward pass (after a CUDA synchronize); the
  first ``WARMUP_STEPS`` are left out, as are set-up, evaluation and saving.
  ``train_tokens_per_s`` counts real tokens (padding left out); ``padding_share`` is the
  padding among the computed tokens of every step;
- ``mfu``: ``4 * N * train_tokens_per_s`` against the card's dense bf16 peak
  (:data:`PEAK_BF16_TFLOPS`). ``N`` (``flop_params``) counts the weights of the matrix
  products a token goes through: every parameter but the input embedding (a lookup), with the
  output layer counted once, tied or not (``hidden * vocab``: 136M of Qwen2.5-0.5B's 494M). A
  LoRA on a frozen base costs ``2N`` forward and ``2N`` backward (gradients of the activations,
  not of the frozen weights); attention's own FLOPs and LoRA's are left out, so it is slightly
  low. null on the CPU;
- ``peak_memory_gib``: ``torch.cuda.max_memory_allocated`` over the training run (on the CPU:
  the process's peak resident memory);
- ``memory_growth_mib``: GPU memory allocated after trial 20 minus after trial 1 of
  ``--memory-trials`` short trials at LoRA rank 16 (each holds ``trial_state_mib`` of adapter,
  gradients and optimizer state, so one trial's leak would show; on the CPU: resident memory);
- ``replies_per_s``: :func:`~evaluators.scoring.generation.generate_replies` with the trained
  adapter and the :class:`~evaluators.config.EvalConfig` defaults, after a warm-up call (a
  random model rarely writes a newline: most replies run the whole 40 tokens);
- ``replies_per_s_mixed_adapters`` and ``replies_per_s_per_adapter``: ``--personas`` personas'
  10 prompts each, every persona with its own adapter: in mixed batches, and persona by persona
  (the default of per-persona and MoE evaluation is chosen by device from these figures);
- ``generation_compiles``: graphs torch.compile built during those generations (0 expected:
  decoding runs uncompiled by default).

Then ``oom`` (:mod:`gpu_oom`): a real out-of-memory in a trial, recovered at a smaller
micro-batch. ``bench_gpu.json`` gets every figure; BENCHMARKS.md says what each means.

Run:  benchmarks/gpu_check.sh   (the GPU tests, then this)
      .venv/bin/python benchmarks/bench_gpu.py [--dry-run] [--out bench_gpu.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPC_CSV = ROOT / "tests/data/synthetic-persona-chat/Synthetic-Persona-Chat_valid.csv"

PEAK_BF16_TFLOPS: dict[str, float] = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "GH200": 989.4,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
    "V100": 125.0,
    "T4": 65.0,
}
"""Dense bf16 (fp16 for V100 and T4) tensor-core peaks in TFLOPS, by a part of the device
name; the first key the name contains wins, so more specific names come first."""

WARMUP_STEPS = 3
"""Training steps left out of the timing (kernel selection, allocator growth)."""


@dataclass(frozen=True)
class ModelShape:
    """A real model's configuration, by the numbers that set its cost."""

    name: str
    family: str
    """``"qwen2"`` or ``"llama"``: the transformers config class."""
    vocab_size: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def scaled(self) -> ModelShape:
        """The dry run's model: hidden 64, 2 layers, the same vocabulary and proportions."""
        ratio = self.intermediate / self.hidden
        return ModelShape(
            f"{self.name} (scaled: hidden 64, 2 layers)", self.family, self.vocab_size,
            64, round(64 * ratio), 2, 4, max(1, 4 * self.kv_heads // self.heads), self.tied,
            self.extra,
        )  # fmt: skip

    def config(self, tokenizer: Any) -> Any:
        """The transformers config, with the tokenizer's special tokens."""
        from transformers import LlamaConfig, Qwen2Config

        kind = {"qwen2": Qwen2Config, "llama": LlamaConfig}[self.family]
        return kind(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden,
            intermediate_size=self.intermediate,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            tie_word_embeddings=self.tied,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **self.extra,
        )


MODELS = (
    ModelShape(
        "Qwen2.5-0.5B-shaped", "qwen2", 151_936, 896, 4864, 24, 14, 2, True,
        {"max_position_embeddings": 32768, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6},
    ),
    ModelShape(
        "Llama-3-8B-shaped", "llama", 128_256, 4096, 14_336, 32, 32, 8, False,
        {"max_position_embeddings": 8192, "rope_theta": 500_000.0, "rms_norm_eps": 1e-5},
    ),
)  # fmt: skip
"""The real configurations (Qwen/Qwen2.5-0.5B and meta-llama/Meta-Llama-3-8B config.json)."""


@dataclass(frozen=True)
class Size:
    """How much work each part does: the check's, or the dry run's."""

    batch_size: int = 8
    max_seq_length: int = 256
    """Training rows are cut to this (the default: what a trial trains on)."""
    timed_steps: int = 30
    eval_prompts: int = 256
    personas: int = 16
    memory_trials: int = 20


GPU = Size()
DRY = Size(
    batch_size=2, max_seq_length=128, timed_steps=3, eval_prompts=8, personas=2, memory_trials=20
)


def peak_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak, or None for a card not in :data:`PEAK_BF16_TFLOPS`."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def build(shape: ModelShape, device: str) -> Any:
    """The random-init model on ``device`` (bf16 where the card has it) as a BaseModel."""
    import torch
    from transformers import AutoModelForCausalLM

    from trainers.base_model import BaseModel
    from trainers.devices import choose_precision

    precision = choose_precision(device)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            shape.config(tokenizer()),
            dtype=torch.bfloat16 if precision == "bf16" else torch.float32,
        )
    model.eval()
    return BaseModel(model, tokenizer(), shape.name, device, precision)


def flop_params(model: Any) -> int:
    """The weights of a token's matrix products: all but the input embedding, the output
    layer counted once whether it is tied to the embedding or not."""
    embedding = model.get_input_embeddings().weight
    own = sum(p.numel() for p in model.parameters() if p is not embedding)
    tied = model.get_output_embeddings().weight is embedding
    return own + (embedding.numel() if tied else 0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


@dataclass
class Steps:
    """What the decoder saw of each training step: its start time, real and computed tokens."""

    starts: list[float] = field(default_factory=list)
    real: list[int] = field(default_factory=list)
    computed: list[int] = field(default_factory=list)

    def tokens_per_s(self, warmup: int) -> float:
        """Real tokens per second over the steps after ``warmup``, the last one left out
        (its end is not seen: the evaluation follows)."""
        spans = self.starts[warmup:]
        if len(spans) < 2:
            raise ValueError(f"{len(self.starts)} steps: need at least {warmup + 2} to time")
        return sum(self.real[warmup:-1]) / (spans[-1] - spans[0])

    @property
    def padding_share(self) -> float:
        return 1 - sum(self.real) / sum(self.computed)


@contextmanager
def timed_steps(base: Any) -> Iterator[Steps]:
    """Note every training forward pass of the decoder in the block."""
    steps = Steps()

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if not module.training:
            return
        _sync(base.device)
        steps.starts.append(time.perf_counter())
        ids, mask = kwargs["input_ids"], kwargs.get("attention_mask")
        steps.computed.append(int(ids.numel()))
        steps.real.append(int(ids.numel() if mask is None else mask.sum()))

    handle = base.model.base_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield steps
    finally:
        handle.remove()


def memory_now(device: str) -> float:
    """MiB in use: allocated GPU memory, or the process's resident memory on the CPU."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.memory_allocated(device) / 2**20
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_memory_gib(device: str) -> float:
    """Peak GPU memory since the last reset, or the process's peak resident memory."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def spc_pairs(n: int) -> list[Any]:
    """``n`` training pairs of Synthetic-Persona-Chat's validation split, in file order."""
    return _spc_pairs()[:n]


@functools.cache
def _spc_pairs() -> list[Any]:
    from trainers.batching import prompt_pairs
    from trainers.data import load_dataset

    return prompt_pairs(load_dataset(SPC_CSV, min_examples=12).dataset.personas, "train")


@functools.cache
def tokenizer() -> Any:
    """The tiny model's tokenizer, trained once per process."""
    from trainers.tiny.model import tiny_tokenizer

    return tiny_tokenizer()


def log(what: str, started: float) -> None:
    """A progress line on stderr: what was done, and the seconds since ``started``."""
    print(f"bench_gpu: {what} ({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)


def train(base: Any, size: Size, work: Path) -> dict[str, Any]:
    """One trial's training, timed by its steps; its adapter is saved under ``work``."""
    import torch

    from trainers.config import DataConfig, TrainConfig
    from trainers.recipe import train_lora

    pairs = spc_pairs(size.batch_size * (WARMUP_STEPS + size.timed_steps + 1) + 8)
    data = DataConfig(max_seq_length=size.max_seq_length)
    config = TrainConfig(epochs=1, batch_size=size.batch_size, evals_per_epoch=1, data=data)
    if base.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(base.device)
    with timed_steps(base) as steps:
        result = train_lora(base, config, pairs[8:], pairs[:8], save_dir=work / "adapter")
    per_s = steps.tokens_per_s(WARMUP_STEPS)
    return {
        "train_steps": result.train_steps,
        "micro_batch_size": result.micro_batch_size,  # smaller only if memory ran out
        "timed_steps": len(steps.starts) - WARMUP_STEPS - 1,
        "train_tokens_per_s": round(per_s, 1),
        "padding_share": round(steps.padding_share, 4),
        "peak_memory_gib": round(peak_memory_gib(base.device), 3),
    }


def memory_growth(base: Any, trials: int) -> dict[str, Any]:
    """Memory in use after each of ``trials`` short trials at rank 16 (one step of 4 rows of
    at most 64 tokens each: the trial's state, not its length, is what a leak would keep);
    the growth after the first."""
    from trainers.config import DataConfig, TrainConfig
    from trainers.recipe import train_lora

    pairs = spc_pairs(6)
    data = DataConfig(max_seq_length=64)
    used = []
    for seed in range(trials):
        config = TrainConfig(
            epochs=1, batch_size=4, lora_rank=16, evals_per_epoch=1, seed=seed, data=data
        )
        train_lora(base, config, pairs[:4], pairs[4:])
        used.append(memory_now(base.device))
    return {
        "memory_trials": trials,
        "memory_growth_mib": round(used[-1] - used[0], 2),
        "trial_state_mib": round(_lora_state_mib(base, 16), 2),
    }


def _lora_state_mib(base: Any, rank: int) -> float:
    """MiB a rank-``rank`` LoRA holds while it trains, what a leak would keep: its weights,
    their gradients and AdamW's two moments, in fp32."""
    from peft import get_peft_model

    from trainers.config import TrainConfig
    from trainers.recipe import lora_config

    model = get_peft_model(base.model, lora_config(TrainConfig(lora_rank=rank), base.model))
    try:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    finally:
        base.model = model.unload()
    return trainable * 4 * 4 / 2**20


def evaluate(base: Any, size: Size, adapter: Path, work: Path) -> dict[str, Any]:
    """Replies per second with one adapter, with many in mixed batches and persona by persona,
    and the graphs torch.compile built meanwhile."""
    import torch
    from bench_adapter_batches import by_persona, mixed, persona_prompts, random_adapters
    from torch._dynamo.utils import counters

    from evaluators.config import EvalConfig
    from evaluators.scoring.generation import generate_replies

    config = EvalConfig()
    groups = persona_prompts(max(size.personas, size.eval_prompts // 10 + 1))
    flat = [p for group in groups for p in group][: size.eval_prompts]
    adapters = random_adapters(base, size.personas, work / "personas")
    torch._dynamo.reset()
    counters.clear()
    generate_replies(base, flat[:4], eval_config=config, adapter_dir=adapter)  # warm-up
    personas = groups[: size.personas]
    sides = {
        "replies_per_s": lambda: generate_replies(
            base, flat, eval_config=config, adapter_dir=adapter
        ),
        "replies_per_s_mixed_adapters": lambda: mixed(base, personas, adapters, config),
        "replies_per_s_per_adapter": lambda: by_persona(base, personas, adapters, config),
    }
    figures: dict[str, Any] = {}
    for name, side in sides.items():
        _sync(base.device)
        started = time.perf_counter()
        replies = side()
        _sync(base.device)
        figures[name] = round(len(replies) / (time.perf_counter() - started), 2)
    figures["generation_compiles"] = int(counters["stats"]["unique_graphs"])
    return figures


def measure(shape: ModelShape, device: str, size: Size, work: Path) -> dict[str, Any]:
    """Every figure of one model."""
    import gc

    import torch

    from trainers.base_model import parameter_count

    started = time.perf_counter()
    base = build(shape, device)
    log(f"{shape.name} built", started)
    n_flop = flop_params(base.model)
    device_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    peak = peak_tflops(device_name)
    figures: dict[str, Any] = {
        "name": shape.name,
        "params": parameter_count(base.model),
        "flop_params": n_flop,
        "vocab_size": shape.vocab_size,
        "precision": base.precision,
        "batch_size": size.batch_size,
    }
    figures |= train(base, size, work)
    log("trained", started)
    per_s = figures["train_tokens_per_s"]
    figures["mfu"] = None if peak is None else round(4 * n_flop * per_s / (peak * 1e12), 4)
    figures |= evaluate(base, size, work / "adapter", work)
    log("evaluated", started)
    figures |= memory_growth(base, size.memory_trials)
    log(f"{size.memory_trials} memory trials", started)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    del base
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return figures


def run(dry: bool, work: Path, memory_trials: int | None = None) -> dict[str, Any]:
    """Measure every model, then cause and recover an out-of-memory; the figures as a dict."""
    import dataclasses

    import torch
    from gpu_oom import recover_oom

    device = "cpu" if dry else "cuda:0"
    if not dry and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: run with --dry-run (or GPU_CHECK_DRY=1)")
    size = DRY if dry else GPU
    if dry:  # two threads on shared cores spin while waiting: 17x slower generation here
        torch.set_num_threads(1)
    if memory_trials is not None:
        size = dataclasses.replace(size, memory_trials=memory_trials)
    shapes = [s.scaled() if dry else s for s in MODELS]
    device_name = torch.cuda.get_device_name(device) if not dry else "cpu"
    figures: dict[str, Any] = {
        "dry_run": dry,
        "device": device_name,
        "peak_bf16_tflops": peak_tflops(device_name),
        "models": [],
    }
    for shape in shapes:
        figures["models"].append(measure(shape, device, size, work / shape.family))
        print(json.dumps(figures["models"][-1]), flush=True)
    started = time.perf_counter()
    figures["oom"] = recover_oom(MODELS[0].scaled() if dry else MODELS[0], device)
    log("out-of-memory trial", started)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=os.environ.get("GPU_CHECK_DRY") == "1",
        help="CPU and scaled-down models (default: $GPU_CHECK_DRY == 1)",
    )
    parser.add_argument("--memory-trials", type=int, default=None, help="default 20")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as work:
        figures = run(args.dry_run, Path(work), args.memory_trials)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    sys.modules.setdefault("bench_gpu", sys.modules["__main__"])  # one copy for gpu_oom
    main()
