"""Running out of memory, and going on with fewer rows at a time.

The first thing a real model meets on a GPU is a batch that does not fit. Training recovers
by itself (:meth:`MicroBatches.run`, called by :func:`trainers.recipe.train_lora`): memory is
freed and the run starts again, in the same process, at half the micro-batch with twice the
gradient accumulation, so the effective batch (``TrainConfig.batch_size``) stays the same, down
to micro-batch 1; only then :class:`OutOfMemory` is raised. Generation recovers the same way
(:class:`ShrinkingBatch`): the rows of a batch run in halves, then quarters, keeping their
padding.

Which errors mean "out of memory" (:func:`is_out_of_memory`): CUDA's ``torch.OutOfMemoryError``,
the CPU allocator's ``RuntimeError`` ("DefaultCPUAllocator: can't allocate memory", which an
address-space limit causes for real), the other devices' messages that accelerate's
``should_reduce_batch_size`` knows, and Python's ``MemoryError`` (a tokenizer's or numpy's
allocation under the same limit).

transformers' own ``auto_find_batch_size`` is not used: it halves the batch without doubling
the accumulation (a trial would change its effective batch and its step count), and it runs
again on the partly trained LoRA weights of the failed attempt.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from trainers.report import ReportFn

log = logging.getLogger(__name__)

R = TypeVar("R")

CPU_MESSAGES = (
    "DefaultCPUAllocator: can't allocate memory",  # posix_memalign failed (Linux, macOS)
    "DefaultCPUAllocator: not enough memory",  # malloc returned NULL (Windows)
)
"""The CPU allocator's out-of-memory messages (c10's ``alloc_cpu.cpp``)."""


class OutOfMemory(RuntimeError):
    """Even one row at a time (micro-batch 1) did not fit in memory.

    Attributes:
        sizes: The micro-batch (or generation batch) sizes tried, largest first, ending at 1.
    """

    def __init__(self, what: str, sizes: Sequence[int], cause: str) -> None:
        self.sizes = tuple(sizes)
        tried = ", ".join(str(size) for size in self.sizes)
        super().__init__(
            f"out of memory at micro-batch 1 in {what} (tried micro-batches {tried}): {cause}"
        )


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that memory ran out (see the module docstring for the forms)."""
    if isinstance(exc, OutOfMemory | MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    message = str(exc)
    if any(text in message for text in CPU_MESSAGES):
        return True
    from accelerate.utils.memory import should_reduce_batch_size

    return bool(should_reduce_batch_size(exc))


def free_memory() -> None:
    """Give memory back after an out-of-memory or a trial: collect garbage, empty the
    device caches (CUDA's caching allocator; on the CPU, glibc's free heap pages).

    Call it after the ``except`` block that caught the error: until then the exception's
    traceback keeps the failed attempt's frames, and with them its tensors, alive.
    """
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    _trim_heap()


def _trim_heap() -> None:
    """glibc's ``malloc_trim(0)``: free heap pages go back to the system (a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    # musl and other C libraries have no malloc_trim
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def smaller_divisor(total: int, size: int) -> int | None:
    """The next size to try after ``size`` ran out of memory: the largest divisor of ``total``
    that is at most half of ``size`` (so that ``total`` stays a whole number of micro-batches:
    32 -> 16 -> 8 ..., 6 -> 3 -> 1), or None when ``size`` is already 1."""
    for candidate in range(size // 2, 0, -1):
        if total % candidate == 0:
            return candidate
    return None


def _cause(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


@dataclass
class MicroBatches:
    """The micro-batches of one training run: the whole batch first, then after each
    out-of-memory the next smaller divisor (:func:`smaller_divisor`), with the gradient
    accumulation that keeps the effective batch ``batch_size``."""

    batch_size: int
    """The effective batch (examples per optimizer step)."""
    tried: list[int] = field(default_factory=list)
    """The micro-batch sizes run so far, largest first; the last one is the current one."""

    @property
    def micro_batch_size(self) -> int:
        """The micro-batch of the last attempt (the whole batch before any)."""
        return self.tried[-1] if self.tried else self.batch_size

    @property
    def gradient_accumulation_steps(self) -> int:
        """Micro-batches per optimizer step."""
        return self.batch_size // self.micro_batch_size

    @property
    def retries(self) -> int:
        """Attempts started again after an out-of-memory."""
        return max(0, len(self.tried) - 1)

    def run(self, attempt: Callable[[int], R], *, what: str) -> R:
        """``attempt(micro_batch_size)``, again at a smaller micro-batch after each
        out-of-memory, with memory freed in between.

        ``attempt`` must start from scratch each time (a fresh LoRA, a fresh optimizer) and
        leave the model as it found it when it raises.

        Raises:
            OutOfMemory: If micro-batch 1 ran out of memory too.
        """
        micro = self.micro_batch_size
        while True:
            self.tried.append(micro)
            try:
                return attempt(micro)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                cause = _cause(exc)
            free_memory()  # out of the except block: the failed attempt's frames are gone
            smaller = smaller_divisor(self.batch_size, micro)
            if smaller is None:
                raise OutOfMemory(what, self.tried, cause)
            log.warning(
                "%s: out of memory at micro-batch %d (%s); again at micro-batch %d with %d "
                "gradient accumulation steps",
                what,
                micro,
                cause,
                smaller,
                self.batch_size // smaller,
            )
            micro = smaller


def report_once(report: ReportFn | None) -> ReportFn | None:
    """``report``, passed each step once over the attempts of one run.

    An attempt after an out-of-memory evaluates again the steps an earlier attempt reported;
    the caller has them already (Optuna ignores a step reported twice, with a warning, and
    its pruner must not be asked about a step again), and they were not stopped then, so
    those steps answer "go on" here without being passed on.
    """
    if report is None:
        return None
    last = 0

    def once(step: int, eval_loss: float) -> bool:
        nonlocal last
        if step <= last:
            return False
        last = step
        return report(step, eval_loss)

    return once


@dataclass
class ShrinkingBatch:
    """How many rows run together: ``size`` at first, halved after each out-of-memory down to
    1, and kept small for the rest of the work (the next batches are no smaller)."""

    size: int
    """Rows per call now."""
    what: str = "generation"
    """What runs, for the log and the error."""
    tried: list[int] = field(default_factory=list)
    """The sizes that ran out of memory, in order."""

    def map(self, fn: Callable[[int, int], list[R]], n: int) -> list[R]:
        """``fn(start, stop)`` over consecutive row ranges covering ``range(n)``, at most
        :attr:`size` rows each; a range that runs out of memory runs again in smaller ones.

        Raises:
            OutOfMemory: If one row alone ran out of memory.
        """
        out: list[R] = []
        start = 0
        while start < n:
            stop = min(n, start + self.size)
            try:
                out.extend(fn(start, stop))
                start = stop
                continue
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                cause = _cause(exc)
            free_memory()
            self.tried.append(self.size)
            if self.size == 1:
                raise OutOfMemory(self.what, self.tried, cause)
            log.warning(
                "%s: out of memory at %d rows (%s); again at %d",
                self.what,
                self.size,
                cause,
                self.size // 2,
            )
            self.size //= 2
        return out


__all__ = [
    "CPU_MESSAGES",
    "MicroBatches",
    "OutOfMemory",
    "ShrinkingBatch",
    "free_memory",
    "is_out_of_memory",
    "report_once",
    "smaller_divisor",
]
