"""Benchmark: LoRA trials and evaluation on one GPU, with a model of a few hundred million
parameters.

A random-init Qwen2 (hidden 1024, 24 layers, 16 heads, 4 key-value heads: about 290M
parameters with the tiny model's 1,559-token vocabulary) is saved with the tiny tokenizer and
loaded the way a worker loads a base model (:func:`trainers.base_model.load_base_model`: one
device, bf16 where supported). Then, in one process, as a worker runs them:

- ``--trials`` LoRA trials (:func:`trainers.recipe.train_lora`, default settings, one epoch of
  generated persona chats each): training tokens per second (prompt and reply tokens of the
  rows, padding left out), model FLOPs utilization against the card's peak (below), and the
  peak GPU memory of each trial (``torch.cuda.max_memory_allocated``, reset per trial);
- one evaluation (:func:`evaluators.scoring.generation.generate_replies` with the last adapter,
  :class:`~evaluators.config.EvalConfig` defaults): replies per second.

Model FLOPs per training token are ``4 * N`` (N = base parameters): forward ``2N``, and the
backward pass through the frozen base computes gradients of the activations (``2N``) but not
of the weights; LoRA's own FLOPs and attention's (short rows) are left out, so the MFU is
slightly low. Peaks are dense bf16 tensor-core figures from the vendors' data sheets
(:data:`PEAK_BF16_TFLOPS`, matched on ``torch.cuda.get_device_name()``; fp16 for cards
without bf16).

``--dry-run`` (or ``GPU_CHECK_DRY=1``) runs the same steps on the CPU with a tiny model
(hidden 64, 2 layers) in well under a minute: proof that the script works where no GPU is.

Run:  benchmarks/gpu_check.sh   (the GPU tests, then this)
      .venv/bin/python benchmarks/bench_gpu.py [--trials 3] [--out results.json] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

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

GPU_SIZE = {"hidden": 1024, "layers": 24, "heads": 16}
DRY_SIZE = {"hidden": 64, "layers": 2, "heads": 4}


def peak_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak, or None for a card not in :data:`PEAK_BF16_TFLOPS`."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def _pairs(n_personas: int, examples: int) -> list[Any]:
    from trainers.batching import PromptPair
    from trainers.prompt import build_prompt, reply_target
    from trainers.tiny.generator import generate_persona_chats

    chats = generate_persona_chats(n_personas, examples, seed=7)
    return [PromptPair(build_prompt(p, c), reply_target(r)) for p, c, r in chats]


def _cuda_memory(device: str, reset: bool = False) -> float | None:
    """Peak GPU memory since the last reset, in GiB (None on the CPU)."""
    if not device.startswith("cuda"):
        return None
    import torch

    peak = torch.cuda.max_memory_allocated(device) / 2**30
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
    return round(peak, 3)


def run(dry: bool, trials: int, work: Path) -> dict[str, Any]:
    """Build the model, run the trials and the evaluation; the figures as a dict."""
    import torch

    from evaluators.config import EvalConfig
    from evaluators.scoring.generation import generate_replies
    from trainers.base_model import load_base_model, parameter_count
    from trainers.batching import tokenize_pairs
    from trainers.config import ModelConfig, TrainConfig
    from trainers.recipe import train_lora
    from trainers.tiny.architectures import save_random_model
    from trainers.tiny.model import tiny_tokenizer

    size = DRY_SIZE if dry else GPU_SIZE
    folder = save_random_model("qwen2", work / "model", tiny_tokenizer(), **size)
    base = load_base_model(ModelConfig(base_model=str(folder), device="cpu" if dry else "auto"))
    if not dry and not base.device.startswith("cuda"):
        raise SystemExit("no CUDA device visible: run with --dry-run (or GPU_CHECK_DRY=1)")
    n_params = parameter_count(base.model)
    train = _pairs(10 if dry else 64, 3 if dry else 16)
    val = _pairs(10, 1)
    config = TrainConfig(epochs=1, batch_size=4 if dry else 16, evals_per_epoch=1)
    rows = tokenize_pairs(base.tokenizer, train, config.data.max_seq_length).rows
    tokens = sum(len(row["input_ids"]) for row in rows) * config.epochs
    device_name = torch.cuda.get_device_name(base.device) if base.device != "cpu" else "cpu"
    peak = peak_tflops(device_name)

    results: list[dict[str, Any]] = []
    adapter = work / "adapter"
    for trial in range(trials):
        _cuda_memory(base.device, reset=True)
        started = time.perf_counter()
        result = train_lora(
            base, config, train, val, save_dir=adapter if trial == trials - 1 else None
        )
        seconds = time.perf_counter() - started
        per_second = tokens / seconds
        results.append(
            {
                "trial": trial,
                "seconds": round(seconds, 3),
                "steps": result.train_steps,
                "tokens_per_second": round(per_second, 1),
                "mfu": None if peak is None else round(4 * n_params * per_second / peak / 1e12, 4),
                "peak_memory_gib": _cuda_memory(base.device),
            }
        )
        print(json.dumps(results[-1]), flush=True)

    prompts = [pair.prompt for pair in _pairs(10 if dry else 64, 2)]
    started = time.perf_counter()
    replies = generate_replies(base, prompts, eval_config=EvalConfig(), adapter_dir=adapter)
    eval_seconds = time.perf_counter() - started
    # The first trial pays for CUDA kernels' first compilation: the steady figure skips it.
    steady = results[1:] or results
    return {
        "dry_run": dry,
        "device": base.device,
        "device_name": device_name,
        "precision": base.precision,
        "parameters": n_params,
        "peak_bf16_tflops": peak,
        "train_tokens_per_trial": tokens,
        "trials": results,
        "tokens_per_second": round(sum(r["tokens_per_second"] for r in steady) / len(steady), 1),
        "mfu": None if peak is None else max(r["mfu"] for r in steady),
        "peak_memory_gib": [r["peak_memory_gib"] for r in results],
        "replies": len(replies),
        "replies_per_second": round(len(replies) / eval_seconds, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="LoRA trials in one process")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=os.environ.get("GPU_CHECK_DRY") == "1",
        help="CPU and a tiny model, to check the script (default: $GPU_CHECK_DRY == 1)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as work:
        figures = run(args.dry_run, args.trials, Path(work))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
