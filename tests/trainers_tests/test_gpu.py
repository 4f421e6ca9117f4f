"""On a CUDA GPU: one device, bf16 where supported, memory stable over many trials, and
sentence embeddings on the GPU. Skipped without CUDA; ``benchmarks/gpu_check.sh`` runs them.
The dry run of that script is tested here too, on the CPU: every figure it writes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.trainers_tests.conftest import SaveModel
from trainers.batching import PromptPair
from trainers.config import ModelConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [PromptPair(f"Persona: I hike.\nA: Hi {n}!\nB:", f" I walk {n} dogs.") for n in range(8)]
SHORT = TrainConfig(epochs=1, batch_size=4, evals_per_epoch=1)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def gpu_base(random_model: SaveModel) -> Any:
    from trainers.base_model import load_base_model

    return load_base_model(ModelConfig(base_model=str(random_model("qwen2", hidden=64))))


@pytest.mark.gpu
@pytest.mark.skipif("not _cuda()", reason="needs a CUDA device")
def test_one_gpu_and_bf16_where_supported(gpu_base: Any, tmp_path: Path) -> None:
    import torch

    from trainers.recipe import train_lora, training_arguments

    base = gpu_base
    assert base.device == "cuda:0"
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert base.precision == expected
    weights = {p.dtype for p in base.model.parameters()}
    assert weights == {torch.bfloat16 if expected == "bf16" else torch.float32}
    args = training_arguments(SHORT, str(tmp_path), 2, "cuda:0", progress=False)
    assert args.n_gpu == 1 and str(args.device) == "cuda:0"
    result = train_lora(base, SHORT, PAIRS, PAIRS[:2])
    assert result.train_steps == 2  # 8 pairs / batch 4, however many GPUs are visible
    devices = {p.device for p in base.model.parameters()}
    assert devices == {torch.device("cuda:0")}


@pytest.mark.gpu
@pytest.mark.skipif("not _cuda()", reason="needs a CUDA device")
def test_memory_is_stable_over_twenty_trials(random_model: SaveModel) -> None:
    """On a model whose trial holds megabytes (rank 128: a leak of one trial's adapter,
    gradients and optimizer would show), GPU memory is the same after trial 20 as after 2."""
    import torch
    from peft import get_peft_model

    from trainers.base_model import load_base_model
    from trainers.recipe import lora_config, train_lora

    folder = random_model("qwen2", hidden=512, layers=4, heads=8)
    base = load_base_model(ModelConfig(base_model=str(folder)))
    allocated = []
    for seed in range(20):
        config = TrainConfig(epochs=1, batch_size=4, lora_rank=128, seed=seed)
        result = train_lora(base, config, PAIRS, PAIRS[:2])
        allocated.append(torch.cuda.memory_allocated())
    assert result.train_steps == 2
    model = get_peft_model(base.model, lora_config(TrainConfig(lora_rank=128), base.model))
    state = 16 * sum(p.numel() for p in model.parameters() if p.requires_grad)  # 4 fp32 copies
    base.model = model.unload()
    assert state > 8 << 20, f"one trial holds {state} bytes: too little for a leak to show"
    growth = allocated[-1] - allocated[1]
    assert growth < 1 << 20, f"memory grew by {growth} bytes over 18 trials: {allocated}"


@pytest.mark.gpu
@pytest.mark.skipif("not _cuda()", reason="needs a CUDA device")
def test_embeddings_run_on_the_gpu() -> None:
    from trainers.embedding import embed, load_embedding_model

    assert load_embedding_model(None).device.type == "cuda"
    assert embed(["I hike every weekend."]).shape == (1, 384)


def test_the_gpu_check_runs_dry_on_the_cpu(tmp_path: Path) -> None:
    """``GPU_CHECK_DRY=1 benchmarks/gpu_check.sh``: every figure of bench_gpu.json, from
    scaled-down models with the real vocabularies, and a real out-of-memory recovered (2 memory
    trials instead of 20, to keep the test short)."""
    import sys

    env = {
        **os.environ,
        "GPU_CHECK_DRY": "1",
        "GPU_CHECK_OUT": str(tmp_path),
        "GPU_CHECK_MEMORY_TRIALS": "2",
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert figures["dry_run"] is True and figures["device"] == "cpu"
    models = figures["models"]
    assert [m["vocab_size"] for m in models] == [151_936, 128_256]
    for m in models:
        assert m["name"] and m["params"] > m["vocab_size"] * 64
        assert 0 < m["flop_params"] <= m["params"]  # the input embedding left out
        assert m["train_tokens_per_s"] > 0 and 0 <= m["padding_share"] < 0.5
        assert m["batch_size"] == m["micro_batch_size"] == 2
        assert m["mfu"] is None  # no peak to compare with on the CPU
        assert m["peak_memory_gib"] > 0 and m["trial_state_mib"] > 0
        assert m["memory_trials"] == 2 and isinstance(m["memory_growth_mib"], float)
        assert m["replies_per_s"] > 0 and m["replies_per_s_mixed_adapters"] > 0
        assert m["replies_per_s_per_adapter"] > 0
        assert m["generation_compiles"] == 0
    oom = figures["oom"]
    assert oom["micro_batch_before"] == 16, oom
    assert oom["recovered"] is True and 1 <= oom["micro_batch_after"] < 16, oom
    assert oom["micro_batch_after"] * oom["gradient_accumulation_steps"] == 16
