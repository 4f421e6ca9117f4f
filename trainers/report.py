"""How a training run reports: every eval_loss to the caller's callback, every log line to a file.

``trainers`` knows nothing of Optuna: the caller passes a plain ``report(step, eval_loss)``
callback that returns True to stop early (a pruned trial, for the hpo package). A transformers
``TrainerCallback`` hands the Trainer's evaluations to it and watches for non-finite losses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ReportFn = Callable[[int, float], bool]
"""``report(step, eval_loss) -> stop``: step counts evaluations (1, 2, ...) so that runs with
other batch sizes or epochs compare at the same fraction of an epoch."""


class NonFiniteLossError(RuntimeError):
    """The training or evaluation loss became NaN or infinite."""


@dataclass
class RunLog:
    """What one training run reported, filled in by :func:`report_callback`."""

    report: ReportFn | None = None
    """The caller's callback, or None to only record."""
    log_file: IO[str] | None = None
    """Where every logged line goes, or None."""
    losses: list[tuple[int, float]] = field(default_factory=list)
    """Every (step, eval_loss) reported, in order."""
    last_eval_step: int = 0
    """The optimizer step of the last evaluation (0: none yet)."""
    stopped_early: bool = False
    """True once ``report`` asked to stop."""
    non_finite: str | None = None
    """Which loss turned NaN or infinite, and where; None while all are finite."""

    def check_finite(self) -> None:
        """Raise :class:`NonFiniteLossError` if a loss turned NaN or infinite.

        Raises:
            NonFiniteLossError: Naming the loss and the step.
        """
        if self.non_finite:
            raise NonFiniteLossError(f"loss is not finite: {self.non_finite}")


@contextmanager
def log_file(path: Path | None, config: dict[str, Any]) -> Iterator[IO[str] | None]:
    """Open the run's log for appending, headed by its config; yield None for no log."""
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"config {json.dumps(config, sort_keys=True)}\n")
        yield handle


def report_callback(run: RunLog) -> Any:
    """A transformers ``TrainerCallback`` that reports into ``run``.

    It hands every eval_loss to ``run.report`` and stops the Trainer when that returns True
    (except at the evaluation after the last step: a finished run is never pruned) or when a
    loss turns NaN or infinite; it writes every log line to ``run.log_file``.
    """
    from transformers import TrainerCallback

    class ReportCallback(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            logs = kw.get("logs") or {}
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                run.non_finite = f"train loss {loss} at step {state.global_step}"
                control.should_training_stop = True
            if run.log_file and logs:
                fields = " ".join(
                    f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()
                )
                run.log_file.write(f"step={state.global_step} {fields}\n")
                run.log_file.flush()

        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            loss = float((kw.get("metrics") or {}).get("eval_loss", float("nan")))
            step = len(run.losses) + 1
            run.last_eval_step = state.global_step
            if not math.isfinite(loss):
                run.non_finite = f"eval_loss {loss} at evaluation {step}"
                control.should_training_stop = True
                return
            run.losses.append((step, loss))
            # The evaluation after the last step is still reported, but its answer is not
            # heeded: training has finished, so stopping would only throw the adapter away.
            final = 0 < state.max_steps <= state.global_step
            if run.report is not None and run.report(step, loss) and not final:
                run.stopped_early = True
                control.should_training_stop = True

    return ReportCallback()


def quiet_progress_callback() -> Any:
    """The Trainer's progress bars without the dict of every log step printed under them.

    transformers' ``ProgressCallback`` writes each log (``{'loss': ...}``) to the terminal;
    a run's log lines go to its log file (:func:`report_callback`) instead.
    """
    from transformers import ProgressCallback

    class QuietProgressCallback(ProgressCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            return None

    return QuietProgressCallback()
