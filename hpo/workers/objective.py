"""The objective: trial -> TrainConfig -> LoRA training with a report callback -> eval_loss.

A completed trial's adapter is written atomically under
``models/trials/<study>/<number>/``, then recorded with its sha256 in storage and in the
trial's record (:mod:`hpo.study.trial_records`, beside its train config and a failure's reason:
Optuna's CLI prints user attributes whole). A pruned or failed trial leaves no adapter behind.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import optuna

import storage
from hpo.study.config import StudyConfig, train_config_for
from hpo.study.space import suggest
from hpo.study.trial_records import (
    FAIL_REASON,
    FAIL_REASON_LENGTH,
    MEMORY_FIELDS,
    error_type,
    save_trial_fields,
)
from hpo.workers.step_budget import BUDGET_SPENT, StepCharger
from hpo.workers.trial_card import Trained, trial_card
from trainers.batching import PromptPair
from trainers.config import TrainConfig
from trainers.memory import OutOfMemory
from trainers.recipe import TrainResult, train_lora

T = TypeVar("T")

ADAPTER_KIND = "trial_adapter"
WORKER_ATTR = "worker"
"""Trial user attribute: the index of the worker that ran the trial (last run, for a retry)."""
PRUNE_REASON_ATTR = "prune_reason"
"""Trial user attribute of a pruned trial: ``pruned`` (by the pruner), the step budget's
:data:`hpo.workers.step_budget.BUDGET_SPENT`, or :data:`OUT_OF_MEMORY`."""
OUT_OF_MEMORY = "out of memory at micro-batch 1"
"""The prune reason of a trial that ran out of memory even one example at a time
(:class:`trainers.memory.OutOfMemory`): the sampler learns the region, the worker goes on."""


FAIL_REASON_ATTR = FAIL_REASON
"""Trial user attribute of a failed trial: the error's type (the dashboard shows it, a clean
stop reads it); its type and message are the field of that name in the trial's record
(:mod:`hpo.study.trial_records`)."""


def fault_outside_params(exc: BaseException) -> bool:
    """Whether a trial that raised ``exc`` failed for a reason outside its parameters.

    A stop signal (``KeyboardInterrupt`` and the worker's ``WorkerStopped``), an ``OSError``
    (a full disk, a read-only or vanished output folder), a lost or failing database and an
    artifact store that stayed unreachable (``storage.StoreUnavailable``) say nothing about
    the parameters: the trial is re-queued with the same ones. A non-finite loss is the
    parameters' fault: not re-queued. Running out of memory never gets here: training
    recovers at a smaller micro-batch, and a trial that does not fit even one example at a
    time is pruned (:data:`OUT_OF_MEMORY`).
    """
    return isinstance(exc, KeyboardInterrupt | OSError | storage.StorageError) or (
        storage.is_disconnect(exc) or storage.is_store_fault(exc)
    )


class TrainFn(Protocol):
    """The training function a trial calls; :func:`trainers.recipe.train_lora` by default.

    It must call ``report(step, eval_loss)`` after each evaluation, stop when that returns
    True (``stopped_early``, nothing saved), and otherwise save the adapter into ``save_dir``.
    """

    def __call__(
        self,
        base: Any,
        config: TrainConfig,
        train: list[PromptPair],
        val: list[PromptPair],
        *,
        report: Callable[[int, float], bool],
        save_dir: Path,
        log_path: Path,
    ) -> TrainResult: ...


@dataclass
class TrialContext:
    """What every trial of one worker shares: loaded once, reused by each trial."""

    config: StudyConfig
    engine: Any
    layout: storage.OutputLayout
    base: Any
    train: list[PromptPair]
    val: list[PromptPair]
    worker_index: int = 0
    """Recorded in each trial's ``worker`` user attribute (dashboard, tests)."""
    train_fn: TrainFn = train_lora
    """Trains one adapter; tests pass a stand-in that writes a small adapter directory."""
    guard: storage.OutageGuard | None = None
    """Waits out a database outage around our own tables' writes (None: no retries)."""
    record_place: Callable[[optuna.Trial], None] | None = None
    """Writes where the trial runs into it when it starts (:mod:`hpo.workers.place`)."""

    def patiently(self, fn: Callable[[], T]) -> T:
        """``fn()``, through :attr:`guard` when there is one."""
        return fn() if self.guard is None else self.guard.call(fn)


class Objective:
    """Callable for ``Study.optimize``: trains one adapter and returns its final eval_loss."""

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx
        self.last_trial_number: int | None = None
        """Number of the trial this objective ran last; the worker resets it to None before
        each trial and looks the trial up by number (after SIGTERM, or when Optuna refuses
        to record the trial's end)."""
        self.last_fault_outside_params = False
        """Whether the last trial failed for a reason outside its parameters
        (:func:`fault_outside_params`); the worker then re-queues it. Only the verdict is
        kept, not the error, whose traceback would hold the trial's tensors in memory."""

    def __call__(self, trial: optuna.Trial) -> float:
        self.last_trial_number = trial.number
        self.last_fault_outside_params = False
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except OutOfMemory as exc:
            # The region does not fit this device: pruned, so the sampler learns it, never a
            # failure that would count toward the worker's stop or lose a seed config.
            with contextlib.suppress(
                optuna.exceptions.UpdateFinishedTrialError, storage.DatabaseUnavailable
            ):
                trial.set_user_attr(PRUNE_REASON_ATTR, OUT_OF_MEMORY)
            with contextlib.suppress(storage.StorageError, storage.DatabaseUnavailable):
                self._record(trial, patient=False, oom_retries=len(exc.sizes) - 1)
            raise optuna.TrialPruned(str(exc)) from exc
        except (Exception, KeyboardInterrupt) as exc:
            self.last_fault_outside_params = fault_outside_params(exc)
            # saved, then its upload or record failed: a failed trial keeps no adapter folder
            ctx = self.ctx
            final = ctx.layout.trial_adapter_dir(ctx.config.study.name, trial.number)
            shutil.rmtree(final, ignore_errors=True)
            # The reason shows in `hpo study trials` and the dashboard, not only in a log.
            # Not stored while the database is down (it would only fail again).
            reason = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(
                optuna.exceptions.UpdateFinishedTrialError, storage.DatabaseUnavailable
            ):
                trial.set_user_attr(FAIL_REASON_ATTR, error_type(exc))
            with contextlib.suppress(storage.StorageError, storage.DatabaseUnavailable):
                self._record(trial, patient=False, fail_reason=reason[:FAIL_REASON_LENGTH])
            raise

    def _record(self, trial: optuna.Trial, *, patient: bool = True, **fields: Any) -> None:
        """Add ``fields`` to the trial's record (its long fields, in our table), waiting out a
        database outage unless not ``patient``."""
        name, engine = self.ctx.config.study.name, self.ctx.engine

        def save() -> None:
            save_trial_fields(engine, name, trial.number, **fields)

        if patient:
            self.ctx.patiently(save)
        else:
            save()

    def _run(self, trial: optuna.Trial) -> float:
        ctx = self.ctx
        study_name = ctx.config.study.name
        if ctx.record_place is not None:
            ctx.record_place(trial)
        trial.set_user_attr(WORKER_ATTR, ctx.worker_index)
        params = suggest(trial, ctx.config.search_space)
        train_config = train_config_for(ctx.config, params)
        self._record(trial, train_config=train_config.to_dict())

        # The study's step budget, charged one evaluation ahead (see hpo/workers/step_budget.py).
        charger = StepCharger.for_trial(ctx.engine, study_name, train_config, len(ctx.train))
        if charger is not None and not charger.charge_next():
            trial.set_user_attr(PRUNE_REASON_ATTR, BUDGET_SPENT)
            raise optuna.TrialPruned(f"{BUDGET_SPENT} before training")

        def report(step: int, eval_loss: float) -> bool:
            trial.report(eval_loss, step)
            if trial.should_prune():
                return True
            return charger is not None and not charger.charge_next()

        final = ctx.layout.trial_adapter_dir(study_name, trial.number)
        log_path = ctx.layout.log_path(f"{study_name}-trial-{trial.number:04d}")
        with storage.atomic_directory(final) as tmp:
            result = ctx.train_fn(
                ctx.base,
                train_config,
                ctx.train,
                ctx.val,
                report=report,
                save_dir=tmp,
                log_path=log_path,
            )
            memory = {name: getattr(result, name) for name in MEMORY_FIELDS}
            self._record(
                trial,
                train_seconds=round(result.seconds, 2),
                train_steps=result.train_steps,
                **memory,
            )
            if result.stopped_early:
                step, loss = result.eval_losses[-1]
                reason = BUDGET_SPENT if charger is not None and charger.refused else "pruned"
                trial.set_user_attr(PRUNE_REASON_ATTR, reason)
                raise optuna.TrialPruned(f"{reason} at evaluation {step} (eval_loss {loss:.4f})")
            # the card is part of the folder, so of the sha256 recorded for it
            folder = final.relative_to(ctx.layout.root).as_posix()
            trained = Trained(train_config, result.final_eval_loss, len(ctx.train), len(ctx.val))
            trial_card(ctx.config, trial.number, params, trained, folder).write(tmp)
        # hashed, uploaded to the shared store when there is one (storage.shared), recorded:
        # an upsert of content-addressed data, so running it twice records one adapter
        adapter = ctx.patiently(
            lambda: storage.publish_and_record(
                ctx.engine,
                ctx.layout,
                final,
                kind=ADAPTER_KIND,
                study_name=study_name,
                trial_number=trial.number,
            )
        )
        # relative to the output root: any machine finds it under its own root or in the store
        self._record(trial, adapter_path=adapter.relpath, adapter_sha256=adapter.sha256)
        return result.final_eval_loss
