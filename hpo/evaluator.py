"""The evaluator service: it watches a study and evaluates its best trials as they come.

``hpo evaluator --study NAME --watch`` runs beside the workers. Every pass it reads the study;
each of the top K COMPLETE trials by eval_loss (K=3 by default: eval_loss rank is not
similarity rank) that has no complete evaluation yet is evaluated, then the baselines once per
study, and then the evaluated trial with the best similarity is promoted and the study's results
file rewritten (:mod:`evaluators.promotion` does the work; this module only reads the study).

Several evaluators may run at once, on any machines that reach the database. Each piece of work
(``trial:N``, ``baselines``, ``promotion``) is taken under a lease (:mod:`storage.leases`), so
two evaluators never do the same piece at once; a killed evaluator's lease expires after
``lease_ttl`` seconds and the next pass of any evaluator takes the work over, resuming the
stored evaluation where it stopped.

Optuna 5 refuses user attributes on a finished trial (``UpdateFinishedTrialError``), so each
trial's figures go into a study user attribute ``evaluation:trial:<N>`` (the dashboard lists
them under the study's user attributes) and the promoted trial into ``evaluation:promoted``.
The evaluator never creates trials.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import optuna

import storage
from evaluators import promotion
from evaluators.config import EvalConfig
from evaluators.promotion import EvalScope, PromotedTrial
from hpo.config import StudyConfig
from hpo.pipeline import load_study_cluster
from hpo.study import load_study
from storage.leases import RENEWALS_PER_TTL

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 3
"""Trials evaluated per study: the best K by eval_loss (a lower loss need not mean a higher
similarity, so the best one alone is not enough)."""
DEFAULT_LEASE_TTL = 300.0
"""Seconds a lease lives without renewal; renewed every third of it while the work runs, so
a killed evaluator's work is taken over after at most this long."""
DEFAULT_POLL_INTERVAL = 30.0
"""Seconds between passes of ``--watch`` (trials take minutes; the check is a few queries)."""
WAIT_INTERVAL = 2.0
"""Seconds between checks while ``--once`` waits for work leased by another evaluator."""
BASELINES_TARGET = "baselines"
PROMOTION_TARGET = "promotion"
TRIAL_ATTR_PREFIX = "evaluation:trial:"
"""Study user attribute ``evaluation:trial:<N>``: trial N's similarity, CI and diversity."""
PROMOTED_ATTR = "evaluation:promoted"
"""Study user attribute: the promoted trial, its similarity and the results file."""


def trial_target(number: int) -> str:
    """The lease target of one trial's evaluation."""
    return f"trial:{number}"


def as_candidate(study_name: str, trial: optuna.trial.FrozenTrial) -> PromotedTrial | None:
    """A COMPLETE trial with its recorded adapter, or None when it has none."""
    path, sha256 = trial.user_attrs.get("adapter_path"), trial.user_attrs.get("adapter_sha256")
    if trial.value is None or path is None or sha256 is None:
        return None
    return PromotedTrial(
        study_name=study_name,
        trial_number=trial.number,
        eval_loss=float(trial.value),
        params=dict(trial.params),
        adapter_path=Path(path),
        adapter_sha256=str(sha256),
    )


def complete_trials(study: optuna.Study) -> list[PromotedTrial]:
    """The study's COMPLETE trials with an adapter, best eval_loss first (ties: lower number)."""
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    found = [c for t in trials if (c := as_candidate(study.study_name, t)) is not None]
    return sorted(found, key=lambda c: (c.eval_loss, c.trial_number))


def top_trials(study: optuna.Study, k: int) -> list[PromotedTrial]:
    """The top ``k`` COMPLETE trials by eval_loss."""
    return complete_trials(study)[:k]


@dataclass
class PassResult:
    """What one pass of the evaluator did."""

    evaluated: list[str] = field(default_factory=list)
    """Targets this evaluator evaluated (``trial:N``, ``baselines``)."""
    waiting: list[str] = field(default_factory=list)
    """Targets due but leased by another live evaluator."""
    failed: list[str] = field(default_factory=list)
    """Trials skipped because their adapter is missing or changed (logged; never promoted)."""
    results: Path | None = None
    """The results file, if this pass rewrote it."""
    report: dict[str, Any] | None = None
    """The report written, if any."""


@dataclass
class StudyEvaluator:
    """One evaluator process on one study: the study, its cluster, the base model (loaded
    when first needed, then kept) and this process's lease holder name."""

    study: optuna.Study
    config: StudyConfig
    engine: Any
    layout: storage.OutputLayout
    scope: EvalScope
    holder: str
    top_k: int = DEFAULT_TOP_K
    lease_ttl: float = DEFAULT_LEASE_TTL
    _base: Any = None

    @property
    def name(self) -> str:
        """The study name."""
        return self.study.study_name

    def base(self) -> Any:
        """The base model, loaded on first use."""
        if self._base is None:
            from trainers.base_model import load_base_model

            self._base = load_base_model(self.config.model)
        return self._base

    def evaluated(self) -> set[int]:
        """Trial numbers with a complete evaluation under this evaluator's settings."""
        return promotion.evaluated_trials(self.engine, self.scope)

    def evaluate_trial(self, trial: PromotedTrial, *, wait: bool = False) -> bool:
        """Evaluate one trial under its lease, unless it is done already.

        Args:
            trial: The trial.
            wait: Wait for another evaluator's lease to end instead of returning False.

        Returns:
            ``True`` if the trial is evaluated now (here or elsewhere), ``False`` if another
            live evaluator holds its lease.
        """
        with self.lease(trial_target(trial.trial_number), wait=wait) as held:
            if held is None:
                return False
            if trial.trial_number in self.evaluated():
                return True
            log.info("evaluating trial %d of %s", trial.trial_number, self.name)
            result = promotion.evaluate_trial(self.engine, self.scope, trial, base=self.base())
            self._record(trial, promotion.evaluation_summary(result))
            log.info(
                "evaluated %s of %s: similarity %.2f%% (holder %s)",
                trial_target(trial.trial_number),
                self.name,
                100 * result.mean_similarity,
                self.holder,
            )
            return True

    def evaluate_baselines(self, *, wait: bool = False) -> bool:
        """Evaluate the baselines under their lease, unless they are done already.

        Returns:
            ``True`` if they are evaluated now, ``False`` if another evaluator holds the lease.
        """
        with self.lease(BASELINES_TARGET, wait=wait) as held:
            if held is None:
                return False
            if promotion.baselines_evaluated(self.engine, self.scope):
                return True
            log.info("evaluating the baselines of %s", self.name)
            promotion.evaluate_baselines(self.engine, self.scope, base=self.base())
            log.info("evaluated %s of %s (holder %s)", BASELINES_TARGET, self.name, self.holder)
            return True

    def promote(self, *, force: bool = False) -> tuple[dict[str, Any], Path] | None:
        """Promote the best evaluated trial and rewrite the results file, under the promotion
        lease (waiting for it); skipped when the file already lists every evaluated trial
        under these settings, unless ``force``.

        Returns:
            The report and its path, or None if nothing changed.
        """
        with self.lease(PROMOTION_TARGET, wait=True):
            trials = complete_trials(self.study)
            evaluated = self.evaluated() & {t.trial_number for t in trials}
            if not evaluated or not promotion.baselines_evaluated(self.engine, self.scope):
                return None
            reported = promotion.reported_trials(self.layout, self.scope)
            if not force and reported == evaluated:
                return None
            report, path = promotion.promote_best(
                self.engine, self.layout, self.scope, trials, base=self.base()
            )
            self._record_report(report, path, {t.trial_number: t for t in trials})
            log.info(
                "promoted trial %d of %s (similarity %.2f%%): %s",
                report["promoted_trial"]["number"],
                self.name,
                100 * report["promoted_trial"]["similarity"],
                path,
            )
            return report, path

    def run_pass(self) -> PassResult:
        """Evaluate what is due now that no other evaluator holds, then promote.

        Due: the top K trials without a complete evaluation, then the baselines (once the
        study has a COMPLETE trial).
        """
        result = PassResult()
        top = top_trials(self.study, self.top_k)
        done = self.evaluated()
        for trial in top:
            if trial.trial_number in done:
                continue
            target = trial_target(trial.trial_number)
            try:
                evaluated = self.evaluate_trial(trial)
            except ValueError as exc:  # its adapter is gone or changed: the others go on
                log.error("skipping %s of %s: %s", target, self.name, exc)
                result.failed.append(target)
                continue
            (result.evaluated if evaluated else result.waiting).append(target)
        if top and not promotion.baselines_evaluated(self.engine, self.scope):
            if self.evaluate_baselines():
                result.evaluated.append(BASELINES_TARGET)
            else:
                result.waiting.append(BASELINES_TARGET)
        promoted = self.promote()
        if promoted is not None:
            result.report, result.results = promoted
        return result

    @contextmanager
    def lease(self, target: str, *, wait: bool) -> Iterator[storage.HeldLease | None]:
        """Hold ``target``'s lease; with ``wait``, retry until it is free or has expired."""
        while True:
            with storage.hold_lease(
                self.engine, self.name, target, self.holder, self.lease_ttl
            ) as held:
                if held is not None or not wait:
                    yield held
                    if held is not None and held.lost.is_set():
                        log.warning(
                            "lease %s of %s expired under this evaluator and was taken over; "
                            "the stored results have no duplicates, but renew more often "
                            "(a longer --lease-ttl)",
                            target,
                            self.name,
                        )
                    return
            time.sleep(min(WAIT_INTERVAL, self.lease_ttl / RENEWALS_PER_TTL))

    def _record(self, trial: PromotedTrial, summary: dict[str, Any]) -> None:
        """Put one trial's figures where the dashboard shows them (a study user attribute)."""
        value = {
            "trial": trial.trial_number,
            "eval_loss": trial.eval_loss,
            **summary,
            "eval_config_key": self.scope.eval_config.key,
        }
        key = f"{TRIAL_ATTR_PREFIX}{trial.trial_number}"
        if self.study.user_attrs.get(key) != value:
            self.study.set_user_attr(key, value)

    def _record_report(
        self, report: dict[str, Any], path: Path, trials: dict[int, PromotedTrial]
    ) -> None:
        keep = ("trial", "eval_loss", "params", "promoted", "adapter")
        for row in report["evaluated_trials"]:
            summary = {k: v for k, v in row.items() if k not in keep}
            self._record(trials[row["trial"]], summary)
        promoted = report["promoted_trial"]
        self.study.set_user_attr(
            PROMOTED_ATTR,
            {
                "trial": promoted["number"],
                "similarity": promoted["similarity"],
                "eval_loss": promoted["eval_loss"],
                "adapter": promoted["adapter"],
                "results": str(path),
                "eval_config_key": self.scope.eval_config.key,
            },
        )


def open_evaluator(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    eval_config: EvalConfig = EvalConfig(),
    top_k: int = DEFAULT_TOP_K,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    holder: str | None = None,
) -> StudyEvaluator:
    """Load the study, its cluster and settings into a :class:`StudyEvaluator`.

    Raises:
        storage.NotFoundError: No such study, or its dataset or cluster is gone.
        ValueError: A ``top_k`` under 1 or a ``lease_ttl`` that is not positive.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"invalid top_k {top_k!r}: use an integer of at least 1")
    if not lease_ttl > 0:
        raise ValueError(f"invalid lease_ttl {lease_ttl!r}: use a positive number of seconds")
    study, config = load_study(url, study_name)
    engine = storage.open_storage(url)
    section = config.study
    cluster = load_study_cluster(engine, section)
    scope = EvalScope(
        study_name=study_name,
        dataset_id=cluster.dataset_id,
        clustering_id=cluster.clustering_id,
        cluster_id=section.cluster_id,
        personas=cluster.personas,
        embedding_model=section.embedding_model,
        eval_config=eval_config,
    )
    return StudyEvaluator(
        study=study,
        config=config,
        engine=engine,
        layout=storage.OutputLayout(Path(output_root).resolve()),
        scope=scope,
        holder=holder or storage.lease_holder_id(),
        top_k=top_k,
        lease_ttl=lease_ttl,
    )


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
) -> PassResult:
    """Evaluate the study's due trials, once or watching.

    With ``once``, passes repeat only while due work is leased by another evaluator (until
    it is done there, or its lease expires and this one takes it over); then it returns.
    Otherwise it watches: a pass every ``poll_interval`` seconds until stopped (SIGTERM or
    Ctrl-C, which release the leases held) or ``max_passes`` ran.

    Returns:
        All passes together: what was evaluated here, and the last results written.
    """
    total = PassResult()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stop) if main else None
    passes = 0
    try:
        while True:
            result = evaluator.run_pass()
            passes += 1
            total.evaluated += result.evaluated
            total.waiting = result.waiting
            total.failed = sorted(set(total.failed) | set(result.failed))
            if result.results is not None:
                total.results, total.report = result.results, result.report
            if max_passes is not None and passes >= max_passes:
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
    eval_config: EvalConfig = EvalConfig(),
    top_k: int = DEFAULT_TOP_K,
) -> tuple[dict[str, Any], Path]:
    """One ``--once`` run, for the demo: evaluate the due top-K trials and the baselines,
    promote the best, and return the study's report.

    Raises:
        LookupError: The study has no COMPLETE trial with an adapter.
    """
    evaluator = open_evaluator(
        url, study_name, output_root=output_root, eval_config=eval_config, top_k=top_k
    )
    if not complete_trials(evaluator.study):
        raise LookupError(f"study {study_name!r} has no COMPLETE trial yet; run workers first")
    result = run_evaluator(evaluator, once=True)
    if result.report is not None and result.results is not None:
        return result.report, result.results
    promoted = evaluator.promote(force=True)  # another evaluator wrote the file: read it back
    if promoted is None:
        raise LookupError(f"study {study_name!r}: nothing evaluated to promote")
    return promoted
