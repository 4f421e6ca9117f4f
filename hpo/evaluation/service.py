"""The evaluator service: it watches a study and evaluates its best trials as they come.

``hpo evaluator --study NAME --watch`` runs beside the workers. Every pass it reads the study;
each of the top K COMPLETE trials by eval_loss (K=3 by default: eval_loss rank is not
similarity rank) that has no complete evaluation yet is evaluated, then the baselines once per
study, and then the evaluated trial with the best similarity is promoted and the study's results
file rewritten (:mod:`evaluators.trials.promotion` does the work; this module only reads the study).

Several evaluators may run at once, on any machines that reach the database. Each piece of work
(``trial:N``, ``baselines``, ``promotion``) is taken under a lease (:mod:`storage.leases`), so
two evaluators never do the same piece at once; a killed evaluator's lease expires after
``lease_ttl`` seconds and the next pass of any evaluator takes the work over, resuming the
stored evaluation where it stopped.

The work items (:class:`~hpo.evaluation.study_work.StudyEvaluator`, the trials due, the lease
targets) are :mod:`hpo.evaluation.study_work`, whose names are re-exported here; this module runs
the passes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import optuna

import storage
from evaluators.config import EvalConfig
from evaluators.trials import promotion
from evaluators.trials.promotion import PromotedTrial, PromotionReport
from hpo.evaluation.candidates import as_candidate, complete_trials, top_trials
from hpo.evaluation.records import broken_line, broken_trials, mark_broken
from hpo.evaluation.study_work import (
    BASELINES_TARGET,
    DEFAULT_LEASE_TTL,
    DEFAULT_TOP_K,
    PROMOTED_ATTR,
    PROMOTION_TARGET,
    TRIAL_ATTR_PREFIX,
    WAIT_INTERVAL,
    StudyEvaluator,
    open_evaluator,
    trial_target,
)

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 30.0
"""Seconds between passes of ``--watch`` (trials take minutes; the check is a few queries)."""


@dataclass
class PassResult:
    """What one pass of the evaluator did."""

    evaluated: list[str] = field(default_factory=list)
    """Targets this evaluator evaluated (``trial:N``, ``baselines``)."""
    waiting: list[str] = field(default_factory=list)
    """Targets due but leased by another live evaluator."""
    failed: list[str] = field(default_factory=list)
    """Trials skipped because their adapter is missing or changed (logged; never promoted)."""
    broken: dict[str, str] = field(default_factory=dict)
    """Trials passed over because their adapter object in the shared store is broken (marked,
    not fetched again; the pass promotes among the others): target -> one line."""
    results: Path | None = None
    """The results file, if this pass rewrote it."""
    report: PromotionReport | None = None
    """The report written, if any."""


def run_pass(evaluator: StudyEvaluator) -> PassResult:
    """Evaluate what is due now that no other evaluator holds, then promote.

    Due: the top K trials without a complete evaluation, then the baselines (once the
    study has a COMPLETE trial). A trial whose adapter object in the shared store is broken
    is marked (:func:`~hpo.evaluation.records.mark_broken`), never fetched again, and passed
    over: the next trial by eval_loss takes its place.
    """
    result = PassResult()
    done = evaluator.evaluated()
    marked = broken_trials(evaluator.engine, evaluator.name)
    top: list[PromotedTrial] = []
    for trial in complete_trials(evaluator.study, evaluator.engine):
        if len(top) == evaluator.top_k:
            break
        target = trial_target(trial.trial_number)
        if trial.trial_number in done:
            top.append(trial)
            continue
        if trial.trial_number in marked:  # its object is broken: the next takes its place
            result.broken[target] = broken_line(target, marked[trial.trial_number])
            continue
        try:
            evaluated = evaluator.evaluate_trial(trial)
        except storage.BrokenArtifact as exc:  # costs this trial, not the pass
            record = mark_broken(evaluator.engine, evaluator.name, trial.trial_number, exc)
            result.broken[target] = broken_line(target, record)
            log.error("%s of %s", result.broken[target], evaluator.name)
            continue
        except ValueError as exc:  # its adapter is gone or changed: the others go on
            log.error("skipping %s of %s: %s", target, evaluator.name, exc)
            result.failed.append(target)
            top.append(trial)
            continue
        top.append(trial)
        (result.evaluated if evaluated else result.waiting).append(target)
    if top and not promotion.baselines_evaluated(evaluator.engine, evaluator.scope):
        if evaluator.evaluate_baselines():
            result.evaluated.append(BASELINES_TARGET)
        else:
            result.waiting.append(BASELINES_TARGET)
    promoted = evaluator.promote()
    if promoted is not None:
        result.report, result.results = promoted
    return result


def study_finished(engine: Any, study: optuna.Study) -> bool:
    """Whether the study's budget is spent and no trial runs or waits: no trial will complete
    any more (a re-queued trial waits, and gave its ticket back first)."""
    name = study.study_name
    with storage.session_scope(engine) as session:
        spent = storage.budget(session, name) is None or storage.budget_spent(session, name)
    states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    return spent and not study.get_trials(deepcopy=False, states=states)


class EvaluatorStopped(KeyboardInterrupt):
    """Raised in the evaluator on SIGTERM: leases are released on the way out."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise EvaluatorStopped(f"evaluator got signal {signum}")


def run_evaluator(
    evaluator: StudyEvaluator,
    *,
    once: bool = False,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    max_passes: int | None = None,
    on_pass: Callable[[PassResult], None] | None = None,
    until_done: bool = False,
) -> PassResult:
    """Evaluate the study's due trials, once or watching.

    With ``once``, passes repeat only while due work is leased by another evaluator (until
    it is done there, or its lease expires and this one takes it over); then it returns.
    Otherwise it watches: a pass every ``poll_interval`` seconds until stopped (SIGTERM or
    Ctrl-C, which release the leases held) or ``max_passes`` ran; with ``until_done``, also
    until a pass that began with the study finished (:func:`study_finished`) left nothing
    waiting: the top trials of the finished study are then evaluated and promoted (for a
    scheduler's job, which should end). ``on_pass`` is called with each pass's result
    (``hpo evaluator --watch`` prints a line per evaluated trial).

    Returns:
        All passes together: what was evaluated here, and the last results written.
    """
    total = PassResult()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stop) if main else None
    passes = 0
    try:
        while True:
            # A pass is safe to run again: leases are re-taken, stored results resumed.
            guard = evaluator.guard
            finished = until_done and (
                study_finished(evaluator.engine, evaluator.study)
                if guard is None
                else guard.call(study_finished, evaluator.engine, evaluator.study)
            )
            result = run_pass(evaluator) if guard is None else guard.call(run_pass, evaluator)
            passes += 1
            if on_pass is not None:
                on_pass(result)
            total.evaluated += result.evaluated
            total.waiting = result.waiting
            total.failed = sorted(set(total.failed) | set(result.failed))
            total.broken.update(result.broken)
            if result.results is not None:
                total.results, total.report = result.results, result.report
            if max_passes is not None and passes >= max_passes:
                break
            if finished and not result.waiting:
                break
            if once:
                if not result.waiting:
                    break
                log.info("waiting for %s, leased by another evaluator", ", ".join(result.waiting))
                time.sleep(min(WAIT_INTERVAL, poll_interval))
            else:
                time.sleep(poll_interval)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    return total


def evaluate_study(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    eval_config: EvalConfig | None = None,
    eval_overrides: Mapping[str, Any] | None = None,
    top_k: int = DEFAULT_TOP_K,
) -> tuple[PromotionReport, Path]:
    """One ``--once`` run, for the demo: evaluate the due top-K trials and the baselines,
    promote the best, and return the study's report. The settings: the study's
    ``[evaluation]`` (or ``eval_config``), ``eval_overrides`` replacing fields
    (:func:`open_evaluator`).

    Raises:
        LookupError: The study has no COMPLETE trial with an adapter.
    """
    evaluator = open_evaluator(
        url,
        study_name,
        output_root=output_root,
        eval_config=eval_config,
        eval_overrides=eval_overrides,
        top_k=top_k,
    )
    if not complete_trials(evaluator.study, evaluator.engine):
        raise LookupError(f"study {study_name!r} has no COMPLETE trial yet; run workers first")
    result = run_evaluator(evaluator, once=True)
    if result.report is not None and result.results is not None:
        return result.report, result.results
    promoted = evaluator.promote(force=True)  # another evaluator wrote the file: read it back
    if promoted is None:
        raise LookupError(f"study {study_name!r}: nothing evaluated to promote")
    return promoted


__all__ = [
    "BASELINES_TARGET",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_TOP_K",
    "PROMOTED_ATTR",
    "PROMOTION_TARGET",
    "TRIAL_ATTR_PREFIX",
    "WAIT_INTERVAL",
    "EvaluatorStopped",
    "PassResult",
    "StudyEvaluator",
    "as_candidate",
    "complete_trials",
    "evaluate_study",
    "open_evaluator",
    "run_evaluator",
    "run_pass",
    "study_finished",
    "top_trials",
    "trial_target",
]
