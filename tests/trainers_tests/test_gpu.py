"""On a CUDA GPU: one device, bf16 where supported, memory stable over many trials, and
sentence embeddings on the GPU. Skipped without CUDA; ``benchmarks/gpu_check.sh`` runs them.
The dry run of that script is tested here too, on the CPU."""

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
def test_memory_is_stable_over_twenty_trials(gpu_base: Any) -> None:
    import torch

    from trainers.recipe import train_lora

    allocated = []
    for seed in range(20):
        train_lora(gpu_base, TrainConfig(epochs=1, batch_size=4, seed=seed), PAIRS, PAIRS[:2])
        allocated.append(torch.cuda.memory_allocated())
    growth = allocated[-1] - allocated[1]
    assert growth < 1 << 20, f"memory grew by {growth} bytes over 18 trials: {allocated}"


@pytest.mark.gpu
@pytest.mark.skipif("not _cuda()", reason="needs a CUDA device")
def test_embeddings_run_on_the_gpu() -> None:
    from trainers.embedding import embed, load_embedding_model

    assert load_embedding_model(None).device.type == "cuda"
    assert embed(["I hike every weekend."]).shape == (1, 384)


def test_the_gpu_check_runs_dry_on_the_cpu(tmp_path: Path) -> None:
    """``GPU_CHECK_DRY=1 benchmarks/gpu_check.sh``: the benchmark's steps on a tiny model."""
    import sys

    env = {
        **os.environ,
        "GPU_CHECK_DRY": "1",
        "GPU_CHECK_OUT": str(tmp_path),
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert figures["dry_run"] is True and figures["device"] == "cpu"
    assert len(figures["trials"]) == 2 and figures["tokens_per_second"] > 0
    assert figures["replies"] > 0 and figures["replies_per_second"] > 0
