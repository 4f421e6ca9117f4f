"""Out of memory in training: which errors count, which micro-batches come next, and a real
out-of-memory mid-run (an address-space limit set at the first report, :mod:`tests.memory_limit`)
that the run survives at a smaller micro-batch with the same effective batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.memory_limit import run_child
from trainers.memory import OutOfMemory, is_out_of_memory, report_once, smaller_divisor

BATCH = 16
ROOMY_MIB = 50
"""Headroom in which micro-batch 16 of 256-token rows does not fit but a smaller one does (on
the machine this was written on: 4 fits at 60 MiB, 2 at 30 MiB)."""
TIGHT_MIB = 8
"""Headroom in which not even one row trains."""


def test_real_out_of_memory_errors_are_recognized() -> None:
    import torch

    with pytest.raises(RuntimeError) as cpu:  # the CPU allocator, asked for a pebibyte
        torch.empty(2**50, dtype=torch.uint8)
    assert is_out_of_memory(cpu.value), cpu.value
    with pytest.raises(MemoryError) as python:
        bytearray(2**62)
    assert is_out_of_memory(python.value)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(OutOfMemory("training", [2, 1], "MemoryError: "))
    assert not is_out_of_memory(RuntimeError("expected scalar type Float but found Half"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_smaller_micro_batches_divide_the_batch() -> None:
    def chain(total: int) -> list[int]:
        sizes = [total]
        while (nxt := smaller_divisor(total, sizes[-1])) is not None:
            sizes.append(nxt)
        return sizes

    assert chain(32) == [32, 16, 8, 4, 2, 1]
    assert chain(6) == [6, 3, 1]
    assert chain(5) == [5, 1]
    assert chain(1) == [1]


def test_report_once_passes_each_step_once() -> None:
    seen: list[tuple[int, float]] = []
    once = report_once(lambda step, loss: seen.append((step, loss)) or step == 3)
    assert once is not None
    answers = [once(1, 1.0), once(2, 0.9), once(1, 1.1), once(2, 0.8), once(3, 0.7)]
    assert seen == [(1, 1.0), (2, 0.9), (3, 0.7)]
    assert answers == [False, False, False, False, True]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    log_path = tmp_path_factory.mktemp("oom-train") / "run.log"
    result = run_child(
        "train",
        {
            "batch_size": BATCH,
            "headroom_mib": ROOMY_MIB,
            "tight_mib": TIGHT_MIB,
            "log_path": str(log_path),
        },
    )
    return {**result, "run_log": Path(log_path).read_text()}


@pytest.mark.slow
def test_training_out_of_memory_mid_run_goes_on_at_a_smaller_micro_batch(
    limited: dict[str, Any],
) -> None:
    assert limited["oom_retries"] >= 1, limited["log"][-3000:]
    micro = limited["micro_batch_size"]
    assert micro < BATCH and micro * limited["gradient_accumulation_steps"] == BATCH
    assert limited["train_steps"] == 2  # 32 rows at batch 16, as without a retry
    # The limit came at the first report; the retry evaluated step 1 again without
    # reporting it twice, then reported step 2.
    assert [step for step, _ in limited["reports"]] == [1, 2]
    assert [step for step, _ in limited["eval_losses"]] == [1, 2]
    assert limited["reports"][1] == limited["eval_losses"][1]
    assert f"out of memory at micro-batch {BATCH}" in limited["log"]
    assert f"micro_batch_size={micro} gradient_accumulation_steps=" in limited["run_log"]


@pytest.mark.slow
def test_micro_batch_one_out_of_memory_raises_and_leaves_the_base_model_clean(
    limited: dict[str, Any],
) -> None:
    assert limited["exhausted_sizes"] == [16, 8, 4, 2, 1]
    assert limited["lora_modules_left"] == []
