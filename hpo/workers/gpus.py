"""Which device each worker of ``hpo launch`` gets, and whether the GPUs can hold them.

A worker sees one device, pinned through ``CUDA_VISIBLE_DEVICES``; several workers may share
a GPU (``--workers-per-gpu N``: a 0.5B model leaves an H100 mostly idle), never one worker
several. The GPUs and their memory are read from ``nvidia-smi``, not through torch, so the
launcher stays light; every function here takes them as arguments too, so the plan is tested
on a machine without a GPU.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainers.config import ModelConfig

log = logging.getLogger(__name__)

GIB = 2**30


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as indices for ``CUDA_VISIBLE_DEVICES``
    (``nvidia-smi``'s count, narrowed by a ``CUDA_VISIBLE_DEVICES`` already set); empty on a
    machine without NVIDIA GPUs."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    out = _nvidia_smi("-L")
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def gpu_memory() -> dict[str, int]:
    """Each GPU's memory in bytes, by its ``nvidia-smi`` index; empty without ``nvidia-smi``
    (then no warning can be given)."""
    return parse_gpu_memory(
        _nvidia_smi("--query-gpu=index,memory.total", "--format=csv,noheader,nounits")
    )


def parse_gpu_memory(text: str) -> dict[str, int]:
    """``nvidia-smi --query-gpu=index,memory.total --format=csv,noheader,nounits`` (one
    ``INDEX, MiB`` line per GPU) as ``{index: bytes}``; lines it cannot read are left out."""
    memory = {}
    for line in text.splitlines():
        index, _, mib = (part.strip() for part in line.partition(","))
        if index.isdigit() and mib.isdigit():
            memory[index] = int(mib) * 2**20
    return memory


def _nvidia_smi(*args: str) -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ""
    try:
        return subprocess.run([smi, *args], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def assign_gpus(n_workers: int, gpus: Sequence[str]) -> list[str | None]:
    """One device per worker: round robin over ``gpus`` (several workers may share one GPU,
    never one worker several), or the CPU for every worker when there is no GPU."""
    if not gpus:
        return [None] * n_workers
    return [gpus[i % len(gpus)] for i in range(n_workers)]


def plan_devices(
    *,
    n_workers: int | None = None,
    gpus: Sequence[str] | None = None,
    per_gpu: int = 1,
    visible: Sequence[str] = (),
) -> list[str | None]:
    """The device of each worker ``hpo launch`` starts, in worker order (None: the CPU).

    ``n_workers``: that many workers, round robin over the ``visible`` GPUs, or on the CPU
    when none is visible. ``gpus``: ``per_gpu`` workers on each of them. Neither: ``per_gpu``
    workers on each visible GPU. Workers sharing a GPU are spread as round robin spreads
    them (``0, 1, 0, 1``): ``--workers-per-gpu 2`` on 2 GPUs is the plan of ``--workers 4``.

    Raises:
        ValueError: Both ``n_workers`` and ``gpus``; ``n_workers`` with ``per_gpu`` other than
            1; ``per_gpu`` below 1; neither and no visible GPU.
    """
    if per_gpu < 1:
        raise ValueError(f"--workers-per-gpu {per_gpu}: expected 1 or more")
    if n_workers is not None and gpus is not None:
        raise ValueError("give either --workers N or --gpus IDS, not both")
    if n_workers is not None:
        if per_gpu != 1:
            raise ValueError(
                "--workers N spreads N workers over the visible GPUs; --workers-per-gpu goes "
                "with --gpus IDS or alone (every visible GPU)"
            )
        return assign_gpus(n_workers, visible)
    chosen = list(gpus) if gpus is not None else list(visible)
    if not chosen:
        raise ValueError(
            "no GPU visible (nvidia-smi, CUDA_VISIBLE_DEVICES): --workers-per-gpu needs GPUs; "
            "give --workers N for workers on the CPU"
        )
    return [gpu for _ in range(per_gpu) for gpu in chosen]


def memory_warning(
    devices: Sequence[str | None], weight_bytes: int, memory: Mapping[str, int]
) -> str | None:
    """One line when the GPUs cannot hold the copies of the base model's weights the plan
    puts on them (one per worker), else None.

    Only the weights are counted: activations, the adapter's optimizer and the CUDA context
    come on top, so a plan without a warning may still not fit.

    Args:
        devices: The plan (:func:`plan_devices`).
        weight_bytes: One copy of the base model's weights (``trainers.weight_bytes``).
        memory: Each GPU's memory in bytes (:func:`gpu_memory`); a GPU it lacks is not judged.
    """
    over = [
        (gpu, n, memory[gpu])
        for gpu, n in sorted(Counter(d for d in devices if d is not None).items())
        if gpu in memory and n * weight_bytes > memory[gpu]
    ]
    if not over:
        return None
    cards = ", ".join(
        f"GPU {gpu}: {n} x {weight_bytes / GIB:.1f} = {n * weight_bytes / GIB:.1f} GiB "
        f"of {size / GIB:.1f} GiB"
        for gpu, n, size in over
    )
    return (
        "warning: the workers' copies of the base model's weights exceed the card's memory "
        f"({cards}); expect out-of-memory errors: start fewer workers per GPU"
    )


def weights_warning(
    devices: Sequence[str | None], model: ModelConfig, memory: Mapping[str, int]
) -> str | None:
    """:func:`memory_warning` for the study's base model, its weights estimated by
    :func:`trainers.weight_bytes` (from its config alone; transformers is imported there,
    and only when there is a GPU's memory to compare with). None when nothing can be judged:
    no GPU in the plan or ``memory``, the tiny model not built yet, a config that cannot be
    read (the workers will say why)."""
    if not memory or all(d is None for d in devices):
        return None
    from trainers.model_check import weight_bytes

    try:
        weights = weight_bytes(model)
    except ValueError as exc:
        log.info("no estimate of the base model's weights: %s", exc)
        return None
    return None if weights is None else memory_warning(devices, weights, memory)
