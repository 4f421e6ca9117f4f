"""The work of an evaluator on one study: the trials due, and each piece of work under its lease.

:class:`StudyEvaluator` holds what one evaluator process needs for one study (the study, its
cluster, the base model once loaded, its lease holder name) and does one piece of work at a
time (``trial:N``, ``baselines``, ``promotion``), each under a lease (:mod:`storage.leases`),
so that two evaluators never do the same piece at once. The loop that runs the passes is
:mod:`hpo.evaluation.service`.

Optuna 5 refuses user attributes on a finished trial (``UpdateFinishedTrialError``), so each
trial's figures go into a study user attribute ``evaluation:trial:<N>`` (the dashboard lists
them under the study's user attributes) and the promoted trial into ``evaluation:promoted``.
The evaluator never creates trials.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

import storage
from evaluators.baselines.runs import UNIFIED
from evaluators.config import EvalConfig
from evaluators.trials import promotion
from evaluators.trials.promotion import EvalScope, PromotedTrial, PromotionReport
from hpo.artifacts import output_layout, publish_file
from hpo.datasets import load_cluster, load_study_cluster
from hpo.evaluation.candidates import complete_trials
from hpo.evaluation.notes import save_trial_note, trial_note_markdown
from hpo.evaluation.records import (
    PROMOTED_ATTR,
    TRIAL_ATTR_PREFIX,
    mark_promoted,
    trial_evaluations,
)
from hpo.study.config import StudyConfig, study_eval_config, train_config_for
from hpo.study.creation import GRACE_PERIOD, load_study
from storage.leases import RENEWALS_PER_TTL
from trainers.config import TrainConfig

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 3
"""Trials evaluated per study: the best K by eval_loss (a lower loss need not mean a higher
similarity, so the best one alone is not enough)."""
DEFAULT_LEASE_TTL = 300.0
"""Seconds a lease lives without renewal; renewed every third of it while the work runs, so
a killed evaluator's work is taken over after at most this long."""
WAIT_INTERVAL = 2.0
"""Seconds between checks while ``--once`` waits for work leased by another evaluator."""
BASELINES_TARGET = "baselines"
PROMOTION_TARGET = "promotion"
BASELINE_SOURCE_ATTR = "evaluation:baselines_trained_with"
"""Study attribute: the trial whose hyperparameters the unified and cluster-0 adapters use
(chosen once, so that every evaluator process trains the same baselines)."""


def trial_target(number: int) -> str:
    """The lease target of one trial's evaluation."""
    return f"trial:{number}"


def compute_matched(config: TrainConfig, cluster: Sequence[Any], everyone: Sequence[Any]) -> Any:
    """The trained baselines' config: the source trial's, with at most as many train examples
    per persona as spread the tuned cluster's training examples over every persona.

    So the unified adapter trains on as many examples as the tuned cluster adapter (the same
    compute, spread over all personas), instead of ``len(everyone) / len(cluster)`` times as
    many; the cluster-0 adapter is capped the same way.
    """
    cap = config.data.max_train_per_persona
    per_cluster = [sum(1 for ex in p.examples if ex.split == "train") for p in cluster]
    total = sum(min(n, cap) if cap else n for n in per_cluster)
    per_persona = max(1, math.ceil(total / max(1, len(everyone))))
    if cap is not None:
        per_persona = min(per_persona, cap)
    data = dataclasses.replace(config.data, max_train_per_persona=per_persona)
    return dataclasses.replace(config, data=data)


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
    guard: storage.OutageGuard | None = None
    """Waits out a database outage: a pass that met one runs again (None: no retries)."""
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
            trial = self.local(trial)
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
            # What a killed holder of this lease left half-written (the unified adapter's
            # temp folder): no one else writes here while we hold the lease.
            folder = self.layout.baseline_adapter_dir(self.name, UNIFIED).parent
            for path in storage.sweep_temp_dirs(folder, lambda: ()):
                log.warning("removed %s, left by a killed evaluator", path)
            if promotion.baselines_evaluated(self.engine, self.scope):
                return True
            log.info("evaluating the baselines of %s", self.name)
            self._prepare_baselines()
            promotion.evaluate_baselines(self.engine, self.scope, base=self.base())
            log.info("evaluated %s of %s (holder %s)", BASELINES_TARGET, self.name, self.holder)
            return True

    def promote(self, *, force: bool = False) -> tuple[PromotionReport, Path] | None:
        """Promote the best evaluated trial and rewrite the results file, under the promotion
        lease (waiting for it); skipped when the file already lists every evaluated trial
        under these settings, unless ``force``.

        Returns:
            The report and its path, or None if nothing changed.
        """
        with self.lease(PROMOTION_TARGET, wait=True):
            trials = complete_trials(self.study, self.engine)
            evaluated = self.evaluated() & {t.trial_number for t in trials}
            if not evaluated or not promotion.baselines_evaluated(self.engine, self.scope):
                return None
            reported = promotion.reported_trials(self.layout, self.scope)
            if not force and reported == evaluated:
                return None
            self._prepare_baselines()
            trials = [self.local(t) if t.trial_number in evaluated else t for t in trials]
            report, path = promotion.promote_best(
                self.engine, self.layout, self.scope, trials, base=self.base()
            )
            self._record_report(report, path)
            log.info(
                "promoted trial %d of %s (similarity %.2f%%): %s",
                report.promoted.trial.trial_number,
                self.name,
                100 * report.promoted.result.mean_similarity,
                path,
            )
            return report, path

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

    def local(self, trial: PromotedTrial) -> PromotedTrial:
        """The trial with its adapter on this machine: under this output root when intact,
        else downloaded from the shared store by its sha256 (storage.shared), from whichever
        machine trained it.

        Raises:
            storage.ArtifactUnavailable: Neither here nor in the store.
        """
        path = storage.fetch_artifact(self.layout, trial.adapter_path, trial.adapter_sha256)
        return dataclasses.replace(trial, adapter_path=path)

    def _baseline_source(self, trials: list[PromotedTrial]) -> PromotedTrial:
        """The trial whose hyperparameters the trained baselines use: the one recorded in the
        study, or else the evaluated trial with the best similarity so far (the one about to be
        promoted), or else the best by eval_loss; recorded for every other evaluator."""
        by_number = {t.trial_number: t for t in trials}
        recorded = self.study.user_attrs.get(BASELINE_SOURCE_ATTR)
        if recorded in by_number:
            return by_number[recorded]
        evaluated = trial_evaluations(self.engine, self.study)
        scored = [
            (evaluated[t.trial_number].get("similarity", 0.0), t)
            for t in trials
            if t.trial_number in evaluated
        ]
        if scored:
            source = max(scored, key=lambda pair: (pair[0], -pair[1].trial_number))[1]
        else:
            source = min(trials, key=lambda t: (t.eval_loss, t.trial_number))
        self.study.set_user_attr(BASELINE_SOURCE_ATTR, source.trial_number)
        return source

    def _prepare_baselines(self) -> None:
        """Give the scope what the trained baselines need (once per process): every persona,
        cluster 0's personas and the source trial's training config."""
        if self.scope.baseline_training is not None:
            return
        trials = complete_trials(self.study, self.engine)
        if not trials:
            return
        source = self._baseline_source(trials)
        section = self.config.study
        with storage.session_scope(self.engine) as session:
            all_personas = storage.load_personas(session, self.scope.dataset_id)
        cluster0 = None
        if section.cluster_id != 0:
            cluster0 = load_cluster(
                self.engine,
                section.dataset,
                section.k,
                0,
                seed=section.clustering_seed,
                embedding_model=section.embedding_model,
            ).personas
        training = promotion.BaselineTraining(
            layout=self.layout,
            all_personas=all_personas,
            cluster0_personas=cluster0,
            train_config=compute_matched(
                train_config_for(self.config, source.params), self.scope.personas, all_personas
            ),
            source_trial=source.trial_number,
        )
        self.scope = dataclasses.replace(self.scope, baseline_training=training)

    def _record(
        self, trial: PromotedTrial, summary: dict[str, Any], *, promoted: bool = False
    ) -> None:
        """Store one trial's figures as a study record, and show them as its dashboard note."""
        value = {
            "trial": trial.trial_number,
            "eval_loss": trial.eval_loss,
            **summary,
            "eval_config_key": self.scope.eval_config.key,
        }
        with storage.session_scope(self.engine) as session:
            storage.save_study_record(
                session, self.name, f"{TRIAL_ATTR_PREFIX}{trial.trial_number}", value
            )
        save_trial_note(
            self.study, trial.trial_number, trial_note_markdown(value, promoted=promoted)
        )

    def _record_report(self, report: PromotionReport, path: Path) -> None:
        """Record every evaluated trial's figures and the promoted trial as study records (the
        study's attributes get the promoted trial's number), and publish the results file."""
        publish_file(self.engine, self.layout, "results_cluster_lora", self.name, path)
        for row in report.trials:
            self._record(row.trial, row.summary(), promoted=row.promoted)
        promoted = report.promoted
        with storage.session_scope(self.engine) as session:
            storage.save_study_record(
                session,
                self.name,
                PROMOTED_ATTR,
                {
                    "trial": promoted.trial.trial_number,
                    "similarity": promoted.result.mean_similarity,
                    "eval_loss": promoted.trial.eval_loss,
                    # relative to the output root: the database never names a local path
                    "adapter": storage.relative(self.layout, report.promoted_dir),
                    "results": storage.relative(self.layout, path),
                    "eval_config_key": self.scope.eval_config.key,
                },
            )
        mark_promoted(self.study, promoted.trial.trial_number, promoted.result, len(report.trials))


def open_evaluator(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    eval_config: EvalConfig | None = None,
    eval_overrides: Mapping[str, Any] | None = None,
    top_k: int = DEFAULT_TOP_K,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    holder: str | None = None,
    patience: float = GRACE_PERIOD,
) -> StudyEvaluator:
    """Load the study, its cluster and settings into a :class:`StudyEvaluator`, waiting out
    a database outage of up to ``patience`` seconds (then and in every pass).

    The evaluation settings are the study's ``[evaluation]`` (or ``eval_config``, used whole
    when given) with ``eval_overrides`` replacing fields (the flags given on a command line;
    :func:`hpo.study.config.study_eval_config`).

    Raises:
        storage.NotFoundError: No such study, or its dataset or cluster is gone.
        hpo.study.config.ConfigError: An override the study's ``[evaluation]`` refuses.
        ValueError: A ``top_k`` under 1 or a ``lease_ttl`` that is not positive.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"invalid top_k {top_k!r}: use an integer of at least 1")
    if not lease_ttl > 0:
        raise ValueError(f"invalid lease_ttl {lease_ttl!r}: use a positive number of seconds")
    waiter = "an evaluator waits (--patience)"
    guard = storage.OutageGuard(url, patience=patience, waiter=waiter)
    study, config = guard.call(load_study, url, study_name)
    engine = guard.call(storage.open_storage, url)
    section = config.study
    settings = study_eval_config(
        config, eval_overrides, base=eval_config, where=f"study {study_name!r}"
    )
    cluster = guard.call(load_study_cluster, engine, section)
    scope = EvalScope(
        study_name=study_name,
        dataset_id=cluster.dataset_id,
        clustering_id=cluster.clustering_id,
        cluster_id=section.cluster_id,
        personas=cluster.personas,
        embedding_model=section.embedding_model,
        eval_config=settings.for_training(config.train.data.max_seq_length),
        model=config.model,
        dataset=section.dataset,
    )
    return StudyEvaluator(
        study=study,
        config=config,
        engine=engine,
        layout=output_layout(output_root, patience=patience, waiter=waiter),  # store probed
        scope=scope,
        holder=holder or storage.lease_holder_id(),
        guard=guard,
        top_k=top_k,
        lease_ttl=lease_ttl,
    )
