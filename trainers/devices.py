"""One device per process, and how training computes on it.

A process trains and evaluates on one device: ``"cpu"`` or one GPU, ``"cuda:N"``. Several
GPUs are used by several workers (``hpo workers --gpus``), each with its own. transformers'
``Trainer`` would otherwise wrap the model in ``torch.nn.DataParallel`` over every visible GPU
(``TrainingArguments.n_gpu = torch.cuda.device_count()``), so that a step's real batch were
``batch_size * n_gpu`` while our step counts assume ``batch_size``; :class:`OneDeviceArguments`
pins the Trainer to the process's device instead.
"""

from __future__ import annotations

import gc
from typing import Any


def resolve_device(device: str) -> str:
    """The one device a process uses: ``"cpu"`` or ``"cuda:N"``.

    ``"auto"`` is the first visible GPU, else the CPU; ``"cuda"`` is the first visible GPU
    (``cuda:0``; a worker per GPU sets ``CUDA_VISIBLE_DEVICES``), never all of them.

    Raises:
        ValueError: If CUDA is asked for and no GPU (or not that GPU) is visible.
    """
    import torch

    if device == "cpu":
        return device
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        return "cuda:0" if count else "cpu"
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise ValueError(
            f"model.device={device!r}: {count} CUDA device(s) visible; expected 'cpu', "
            f"'auto' or cuda:N with N < {count}"
        )
    return f"cuda:{index}"


def choose_precision(device: str) -> str:
    """``"bf16"`` on a GPU that supports it, ``"fp16"`` on an older GPU (fp32 weights, fp16
    autocast: fp16 weights would lose small updates), ``"fp32"`` on the CPU."""
    import torch

    if not device.startswith("cuda"):
        return "fp32"
    with torch.cuda.device(torch.device(device)):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def release_memory(device: str) -> None:
    """Give freed memory back after a trial: collect garbage, empty CUDA's cache."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def one_device_arguments(device: str, **kwargs: Any) -> Any:
    """``TrainingArguments(**kwargs)`` whose Trainer runs on ``device`` alone.

    transformers 5 sets ``n_gpu`` to every visible GPU and the device to ``cuda:0`` in
    ``TrainingArguments._setup_devices`` (no argument changes either); the subclass runs
    it, then puts the chosen GPU in place and sets ``n_gpu = 1``, so the Trainer neither
    wraps the model in ``DataParallel`` nor multiplies the batch. accelerate takes the
    current CUDA device, which is set to ``device`` before and after.
    """
    from functools import cached_property

    import torch
    from transformers import TrainingArguments

    class OneDeviceArguments(TrainingArguments):
        @cached_property
        def _setup_devices(self) -> torch.device:
            if device.startswith("cuda"):
                torch.cuda.set_device(torch.device(device))
            chosen = TrainingArguments._setup_devices.func(self)  # type: ignore[attr-defined]
            if chosen.type == "cuda":
                chosen = torch.device(device)
                torch.cuda.set_device(chosen)
                self._n_gpu = 1
            return chosen

    return OneDeviceArguments(use_cpu=device == "cpu", **kwargs)
