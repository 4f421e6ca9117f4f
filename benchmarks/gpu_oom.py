"""The GPU check's out-of-memory: a real one in a trial, and the trial recovered by itself.

A trial starts at micro-batch :data:`BEFORE`, which the memory left to it cannot hold, and
:func:`trainers.recipe.train_lora` recovers as a worker would (:mod:`trainers.memory`): memory
freed, the run started again at half the micro-batch with twice the gradient accumulation,
until a micro-batch fits. The memory is limited for real, not simulated:

- on a GPU, ``torch.cuda.set_per_process_memory_fraction`` leaves :data:`GPU_HEADROOM_GIB`
  above the loaded model: the caching allocator raises CUDA's ``torch.OutOfMemoryError``
  beyond it (the limit is lifted afterwards);
- on the CPU (the dry run), a child process caps its address space at what it uses plus
  :data:`CPU_HEADROOM_GIB` (``RLIMIT_AS``): torch's allocator raises "DefaultCPUAllocator:
  can't allocate memory".

With rows of about 220 tokens and a vocabulary of 151,936, the output layer's logits alone
take 60 to 130 MB a row (bf16 / fp32), so a micro-batch of 16 is far over either headroom and
one of 1 or 2 fits.

Run alone:  .venv/bin/python benchmarks/gpu_oom.py [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BEFORE = 16
"""The micro-batch the trial starts at (its batch size: the effective batch stays 16)."""
GPU_HEADROOM_GIB = 2.0
CPU_HEADROOM_GIB = 1.5


def _trial(base: Any) -> dict[str, Any]:
    """Train one trial at :data:`BEFORE` and say how it ended."""
    from bench_gpu import spc_pairs

    from trainers.config import TrainConfig
    from trainers.recipe import train_lora

    pairs = spc_pairs(BEFORE + 2)
    config = TrainConfig(epochs=1, batch_size=BEFORE, evals_per_epoch=1)
    figures: dict[str, Any] = {"micro_batch_before": BEFORE}
    try:
        result = train_lora(base, config, pairs[2:], pairs[:2])
    except Exception as exc:  # the figure says what happened; the check goes on
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return figures | {"recovered": False, "micro_batch_after": None, "error": message[:300]}
    return figures | {
        "recovered": result.oom_retries > 0 and (result.micro_batch_size or BEFORE) < BEFORE,
        "micro_batch_after": result.micro_batch_size,
        "gradient_accumulation_steps": result.gradient_accumulation_steps,
        "oom_retries": result.oom_retries,
        "train_steps": result.train_steps,
    }


def _on_gpu(shape: Any, device: str) -> dict[str, Any]:
    import torch
    from bench_gpu import build

    base = build(shape, device)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    allowed = torch.cuda.memory_reserved(device) + GPU_HEADROOM_GIB * 2**30
    torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / total), device)
    try:
        figures = _trial(base)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        del base
        torch.cuda.empty_cache()
    return figures | {"limit": f"GPU memory: the model's plus {GPU_HEADROOM_GIB} GiB"}


def _address_space() -> int:
    """Bytes of this process's address space (VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _child(family: str) -> dict[str, Any]:
    """In the child process: the scaled model, a warm-up, the limit, then the trial."""
    import resource

    import torch
    from bench_gpu import MODELS, build, spc_pairs

    from trainers.config import TrainConfig
    from trainers.recipe import train_lora

    torch.set_num_threads(1)
    shape = next(s for s in MODELS if s.family == family).scaled()
    base = build(shape, "cpu")
    pairs = spc_pairs(4)
    # a first small run starts the threads and allocator arenas that the trial will use
    train_lora(base, TrainConfig(epochs=1, batch_size=1, evals_per_epoch=1), pairs[:2], pairs[2:])
    limit = _address_space() + int(CPU_HEADROOM_GIB * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return _trial(base) | {"limit": f"address space: in use plus {CPU_HEADROOM_GIB} GiB"}


def recover_oom(shape: Any, device: str) -> dict[str, Any]:
    """Cause an out-of-memory in a trial of ``shape`` on ``device``; the figures as a dict."""
    if device.startswith("cuda"):
        return _on_gpu(shape, device)
    done = subprocess.run(
        [sys.executable, __file__, "--child", shape.family],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {
            "recovered": False,
            "micro_batch_before": BEFORE,
            "micro_batch_after": None,
            "error": f"child exited {done.returncode}: {tail[:300]}",
        }
    return dict(json.loads(lines[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="FAMILY", help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, in a child process")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child)), flush=True)
        return
    from bench_gpu import MODELS

    shape = MODELS[0].scaled() if args.dry_run else MODELS[0]
    print(json.dumps(recover_oom(shape, "cpu" if args.dry_run else "cuda:0")))


if __name__ == "__main__":
    main()
