"""Evaluate one thing by hand (``hpo evaluate``): a trial of a study, or an adapter folder.

Both take the same leases as the evaluator service (:mod:`hpo.evaluation.service`), waiting for them
if an evaluator holds them, so a hand evaluation never runs beside the service's on the same
work, and both store into the same resumable evaluation runs.
"""

from __future__ import annotations

from pathlib import Path

import storage
from evaluators.config import EvalConfig
from evaluators.scoring.method_run import generate_and_store
from evaluators.trials import promotion
from evaluators.trials.promotion import AdapterReport, PromotionReport
from hpo.evaluation.service import (
    DEFAULT_LEASE_TTL,
    StudyEvaluator,
    complete_trials,
    open_evaluator,
)
from trainers.adapter_check import check_adapter_dir


def _open(
    url: str, study_name: str, output_root: Path, eval_config: EvalConfig, lease_ttl: float
) -> StudyEvaluator:
    return open_evaluator(
        url, study_name, output_root=output_root, eval_config=eval_config, lease_ttl=lease_ttl
    )


def evaluate_trial_by_hand(
    url: str,
    study_name: str,
    trial_number: int | None = None,
    *,
    output_root: Path = Path("."),
    eval_config: EvalConfig = EvalConfig(),
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> tuple[PromotionReport, Path]:
    """Evaluate one COMPLETE trial and the baselines, then promote the best evaluated trial.

    Args:
        url: The storage URL.
        study_name: The study.
        trial_number: The trial; None for the best by eval_loss.
        output_root: Where ``models/`` and ``results/`` go.
        eval_config: How replies are generated.
        lease_ttl: Time to live of the leases taken.

    Returns:
        The study's report (all evaluated trials; the promoted one may be another trial) and
        the path of ``results/<study>/cluster_lora/cluster_lora_results.json``.

    Raises:
        storage.NotFoundError: The study has no such COMPLETE trial with an adapter.
    """
    evaluator = _open(url, study_name, output_root, eval_config, lease_ttl)
    trials = complete_trials(evaluator.study, evaluator.engine)
    if not trials:
        raise storage.NotFoundError(
            f"study {study_name!r} has no COMPLETE trial yet; run workers first"
        )
    if trial_number is None:
        trial = trials[0]
    else:
        by_number = {t.trial_number: t for t in trials}
        if trial_number not in by_number:
            raise storage.NotFoundError(
                f"study {study_name!r} has no COMPLETE trial {trial_number} with an adapter; "
                f"COMPLETE trials: {sorted(by_number)}"
            )
        trial = by_number[trial_number]
    evaluator.evaluate_trial(trial, wait=True)
    evaluator.evaluate_baselines(wait=True)
    promoted = evaluator.promote(force=True)
    assert promoted is not None  # the trial and the baselines are evaluated
    return promoted


def evaluate_adapter_by_hand(
    url: str,
    study_name: str,
    adapter: Path,
    *,
    output_root: Path = Path("."),
    eval_config: EvalConfig = EvalConfig(),
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> tuple[AdapterReport, Path]:
    """Evaluate an adapter folder on the study's cluster against the study's baselines.

    The adapter is named by its content's sha256 (``adapter-<12 hex>``), never promoted, and
    its report goes to ``results/<study>/cluster_lora/adapter-<12 hex>_results.json``. Its
    replies are generated before the baselines are evaluated, so an adapter that does not
    load onto the base model is refused at once (its run closed as failed), not after the
    baselines' training.

    Raises:
        storage.NotFoundError: ``adapter`` is not a directory.
        trainers.adapter_check.AdapterError: A file of the adapter is missing or broken
            (before any run is opened), or it does not load onto the base model (its run is
            then closed as failed, with the reason).
    """
    adapter = Path(adapter).resolve()
    if not adapter.is_dir():
        raise storage.NotFoundError(f"adapter {str(adapter)!r} is not a directory")
    check_adapter_dir(adapter)  # before any run is opened: a broken one leaves none running
    evaluator = _open(url, study_name, output_root, eval_config, lease_ttl)
    method, _ = promotion.adapter_method(adapter)
    scope = evaluator.scope
    with evaluator.lease(method, wait=True):
        generate_and_store(
            evaluator.engine,
            scope.run_key(method),
            evaluator.base(),
            scope.items(),
            adapter_dir=adapter,
            embedding_model=scope.embedding_model,
        )
    evaluator.evaluate_baselines(wait=True)
    with evaluator.lease(method, wait=True):  # the run is stored: this summarizes it
        return promotion.evaluate_adapter(
            evaluator.engine, evaluator.layout, scope, adapter, base=evaluator.base()
        )
