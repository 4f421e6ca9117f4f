"""Per-persona adapters: one small adapter per persona, trained on its own train split.

They run as an Optuna study of their own, ``<study>-personas``, beside the tuned study: each
persona is one enqueued trial whose user attribute ``persona`` names it, and every trial
trains with the same fixed hyperparameters (by default the promoted trial's). So the queue,
the heartbeats, the retries of a trial whose process died, and the dashboard all come from
Optuna; the exact budget of :mod:`storage.budget` makes several processes, on any machines,
share the queue without running a persona twice.

Why an in-process runner and not ``hpo worker``: the worker loads one cluster's training data
once and runs the tuned study's objective (suggested parameters, pruning, the step budget).
A persona trial has no parameters to suggest, its own data and no pruning; folding that into
the worker would put a second objective behind a switch in the file that owns the trial loop.
:func:`train_persona_adapters` is that loop for this study: claim a ticket, run one enqueued
trial through ``Study.optimize`` with heartbeats, repeat. Start it on as many machines as
there are; each one takes the next waiting persona.

A failed persona trial, whether its process died (stale) or its training raised (a full
disk), is queued again with its persona and handed its budget ticket; so any number of
failed runs followed by a good one leave one COMPLETE trial per persona, and the budget
equals the personas enqueued.

Resumable: a persona whose adapter exists with a matching config hash (hyperparameters, base
model and the persona's training pairs) is not enqueued again, and its trial, if one is queued,
reuses the adapter. Adapters go to ``models/<study>/personas/<persona>/`` with ``persona.json``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

import storage
from evaluators.moe.run import PersonaAdapter
from hpo.artifacts import output_layout, store_outage
from hpo.datasets import ClusterData, load_study_cluster
from hpo.evaluation.notes import personas_study_note, save_study_note, study_note
from hpo.evaluation.records import promoted_trial
from hpo.personas.objective import (
    ADAPTER_KIND,
    HASH_ATTR,
    PERSONA_ATTR,
    SETUP_FILE,
    PersonaJob,
    PersonaObjective,
    short_hash,
    training_hash,
)
from hpo.study import trial_records as records
from hpo.study.config import StudyConfig, train_config_for
from hpo.study.creation import GRACE_PERIOD, METRIC_NAME, load_study, optuna_storage
from hpo.study.records import KIND_ATTR, PERSONAS_KIND, SOURCE_ATTR
from hpo.workers.stop import requeue
from hpo.workers.tickets import fail_stale_trials
from storage.locks import database_lock
from trainers.config import TrainConfig

__all__ = [
    "ADAPTER_KIND",
    "HASH_ATTR",
    "KIND",
    "KIND_ATTR",
    "MAX_CONSECUTIVE_FAILURES",
    "PERSONA_ATTR",
    "SETUP_FILE",
    "SOURCE_ATTR",
    "SUFFIX",
    "TRAIN_CONFIG_ATTR",
    "PersonaJob",
    "PersonaObjective",
    "PersonaTrainSummary",
    "enqueue_personas",
    "persona_adapters",
    "personas_study_name",
    "source_train_config",
    "train_persona_adapters",
    "training_hash",
]

log = logging.getLogger(__name__)

SUFFIX = "-personas"
"""The per-persona study of study S is ``S-personas``."""
KIND = PERSONAS_KIND
"""Study user attribute ``kind`` (:data:`KIND_ATTR`): marks a per-persona study."""
TRAIN_CONFIG_ATTR = "train_config"
"""Study record (``storage.study_records``) of the per-persona study: the fixed training
config; a study user attribute before 0005, when ``optuna studies`` printed it whole."""
MAX_CONSECUTIVE_FAILURES = 3


def _collect(into: list[optuna.trial.FrozenTrial]) -> Any:
    """A study callback that keeps each finished trial (its final state) in ``into``."""
    return lambda _study, trial: into.append(trial)


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial, engine: Any) -> None:
    """Queue a failed persona trial again, and give its ticket to the copy.

    The copy keeps the persona and config hash, and its retry history links it to the
    original; the ticket goes back only once the copy waits, so a budget ticket is never free
    without a waiting persona trial to take it (a free ticket would make ``optimize`` create a
    trial with no persona). Retried without limit: every persona needs its adapter, and a run
    stops after :data:`MAX_CONSECUTIVE_FAILURES` failures in a row. A trial with no persona
    (from a ticket left over by an older version) is not queued again and keeps its ticket.
    """
    if trial.user_attrs.get(PERSONA_ATTR) is None:
        return
    requeue(study, trial, max_retry=None, transient=False)
    with storage.session_scope(engine) as session:
        storage.release_ticket(session, study.study_name)


def _claim_ticket(engine: Any, name: str) -> bool:
    with storage.session_scope(engine) as session:
        return bool(storage.claim_ticket(session, name))


def personas_study_name(study_name: str) -> str:
    """``<study>-personas``."""
    return storage.validate_name(f"{study_name}{SUFFIX}", what="study name")


def source_train_config(study: optuna.Study, config: StudyConfig) -> tuple[TrainConfig, str]:
    """The fixed hyperparameters: the promoted trial's, else the best COMPLETE trial's, else
    the study's base ``[train]`` config; with a phrase saying which."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    number = promoted_trial(study)
    if number is not None and number in trials:
        return train_config_for(config, dict(trials[number].params)), f"promoted trial {number}"
    complete = [
        t
        for t in trials.values()
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
    ]
    if complete:
        best = min(complete, key=lambda t: (t.value, t.number))
        return train_config_for(config, dict(best.params)), f"best trial {best.number}"
    return config.train, "the study's [train] config (no COMPLETE trial yet)"


@dataclass
class PersonaTrainSummary:
    """What :func:`train_persona_adapters` found and did."""

    study_name: str
    """The per-persona study."""
    source: str
    """Where the fixed hyperparameters came from."""
    n_personas: int
    already_done: int = 0
    """Personas whose adapter existed with a matching hash before this call."""
    enqueued: int = 0
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


PERSONAS_WAITER = "persona training waits (its heartbeat grace period)"
"""Who waits out a database or store outage, as the messages past the patience say."""


def _load_job(
    url: str,
    study_name: str,
    output_root: Path,
    overrides: Mapping[str, Any] | None,
    patience: float = GRACE_PERIOD,
) -> tuple[PersonaJob, ClusterData, str]:
    study, config = load_study(url, study_name)
    engine = storage.open_storage(url)
    cluster = load_study_cluster(engine, config.study)
    train_config, source = source_train_config(study, config)
    if overrides:
        data_fields = {f.name for f in dataclasses.fields(train_config.data)}
        data = {k: v for k, v in overrides.items() if k in data_fields}
        top = {k: v for k, v in overrides.items() if k not in data_fields}
        train_config = dataclasses.replace(
            train_config, **top, data=dataclasses.replace(train_config.data, **data)
        )
        source += f", with {dict(overrides)}"
    job = PersonaJob(
        study_name=study_name,
        config=config,
        train_config=train_config,
        personas={p.key: p for p in cluster.personas},
        layout=output_layout(output_root, patience=patience, waiter=PERSONAS_WAITER),
        engine=engine,
        base_model=config.model.base_model,
    )
    return job, cluster, source


def _queued(study: optuna.Study) -> dict[str, set[str]]:
    """Persona -> config hashes that are WAITING or RUNNING."""
    active = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    out: dict[str, set[str]] = {}
    for t in study.get_trials(deepcopy=False, states=active):
        if PERSONA_ATTR in t.user_attrs:
            found = short_hash(str(t.user_attrs.get(HASH_ATTR, "")))
            out.setdefault(t.user_attrs[PERSONA_ATTR], set()).add(found)
    return out


def enqueue_personas(
    url: str, job: PersonaJob, summary: PersonaTrainSummary, rdb: optuna.storages.RDBStorage
) -> optuna.Study:
    """Create the per-persona study if new, and enqueue every persona whose adapter is missing
    or stale and not already queued; the budget grows by the trials enqueued."""
    name = summary.study_name
    with database_lock(job.engine, f"personas-{job.study_name}"):
        try:
            study = optuna.load_study(study_name=name, storage=rdb)
        except KeyError:
            study = optuna.create_study(study_name=name, storage=rdb, direction="minimize")
            study.set_metric_names([METRIC_NAME])
            study.set_user_attr(KIND_ATTR, KIND)
            study.set_user_attr(SOURCE_ATTR, job.study_name)
        if study.user_attrs.get(KIND_ATTR) != KIND:
            raise storage.NotFoundError(
                f"study {name!r} exists but is not a per-persona study; rename study "
                f"{job.study_name!r} or delete {name!r}"
            )
        note = personas_study_note(job.study_name)
        if study_note(study) != note:
            save_study_note(study, note)
        with storage.session_scope(job.engine) as session:
            storage.save_study_record(session, name, TRAIN_CONFIG_ATTR, job.train_config.to_dict())
        queued = _queued(study)
        new = 0
        for key in sorted(job.personas):
            config_hash = job.config_hash(key)
            if job.reusable(key, config_hash) is not None:
                summary.already_done += 1
                continue
            if short_hash(config_hash) in queued.get(key, set()):
                continue
            attrs = {PERSONA_ATTR: key, HASH_ATTR: short_hash(config_hash)}
            study.enqueue_trial({}, user_attrs=attrs)
            new += 1
        with storage.session_scope(job.engine) as session:
            current = storage.budget(session, name)
            total = (current[0] if current else 0) + new
            storage.set_budget(session, name, total)
        summary.enqueued = new
    return study


def train_persona_adapters(
    url: str,
    study_name: str,
    *,
    output_root: Path = Path("."),
    overrides: Mapping[str, Any] | None = None,
    threads: int | None = None,
    grace_period: int = GRACE_PERIOD,
    progress: bool = True,
) -> PersonaTrainSummary:
    """Train one adapter per persona of the study's cluster (``hpo personas train``).

    Args:
        url: The storage URL of the study.
        study_name: The tuned study (its cluster's personas, its promoted trial).
        output_root: Root of ``models/`` and ``logs/``.
        overrides: TrainConfig fields to change (``epochs``, ``max_train_per_persona``, ...),
            e.g. to scale the training down for the demo.
        threads: CPU threads for torch.
        grace_period: Seconds without heartbeat after which a trial is retried.
        progress: Show a progress bar over the personas.

    Returns:
        What was found, enqueued, trained and reused.

    Raises:
        storage.NotFoundError: No such study.
        RuntimeError: If trials fail several times in a row.
    """
    from tqdm.auto import tqdm

    from trainers.base_model import load_base_model, set_threads

    # Every database call waits out an outage up to the grace period, as the workers' do.
    guard = storage.OutageGuard(url, patience=grace_period, waiter=PERSONAS_WAITER)
    job, cluster, source = guard.call(
        _load_job, url, study_name, output_root, overrides, grace_period
    )
    name = personas_study_name(study_name)
    summary = PersonaTrainSummary(name, source, len(cluster.personas))
    engine = job.engine

    def on_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        log.warning("persona trial %d went stale (its process died)", trial.number)
        _requeue(study, trial, engine)

    rdb = optuna_storage(
        url, heartbeat=True, on_stale=on_stale, grace_period=grace_period, guard=guard
    )
    study = guard.call(enqueue_personas, url, job, summary, rdb)
    study.sampler = optuna.samplers.RandomSampler(seed=0)  # nothing to suggest
    study.pruner = optuna.pruners.NopPruner()
    waiting = (optuna.trial.TrialState.WAITING,)
    pending = len(study.get_trials(deepcopy=False, states=waiting))
    if not pending:
        return summary
    set_threads(threads)
    objective = PersonaObjective(job, load_base_model(job.config.model))
    failures = 0
    bar = tqdm(total=pending, desc=f"persona adapters ({name})", disable=not progress)
    verbosity = optuna.logging.get_verbosity()
    if progress:  # the bar says what Optuna's "Trial N finished" lines would
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        while True:
            guard.call(fail_stale_trials, study)
            if not study.get_trials(deepcopy=False, states=waiting):
                break  # a ticket left over would make Optuna create a trial with no persona
            if not guard.call(_claim_ticket, engine, name):
                break
            finished: list[optuna.trial.FrozenTrial] = []
            study.optimize(
                objective,
                n_trials=1,
                catch=(Exception,),
                callbacks=[_collect(finished)],
                gc_after_trial=False,
            )
            trial = finished[-1]
            key = str(trial.user_attrs.get(PERSONA_ATTR))
            bar.update(1)
            if trial.state == optuna.trial.TrialState.COMPLETE:
                failures = 0
                (summary.reused if trial.user_attrs.get("reused") else summary.trained).append(key)
                bar.set_postfix_str(f"{key}: eval_loss {trial.value:.4f}")
                continue
            if guard.gave_up:  # the trial failed on the database: Optuna's catch hid it
                raise guard.unavailable()
            summary.failed.append(key)
            guard.call(_requeue, study, trial, engine)
            if (outage := store_outage(job.layout)) is not None:
                raise outage  # re-queued; the store is down past the patience
            failures += 1
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise RuntimeError(
                    f"{failures} persona trials failed in a row; last: trial {trial.number} "
                    f"({key}): {_fail_reason(engine, name, trial)}"
                )
    finally:
        bar.close()
        optuna.logging.set_verbosity(verbosity)
    return summary


def persona_adapters(
    url: str, study_name: str, layout: storage.OutputLayout
) -> dict[str, PersonaAdapter]:
    """The per-persona adapters of a study: each persona's newest COMPLETE trial whose
    adapter is intact under this output root or in the shared store (downloaded then), on
    whichever machine trained it.

    Raises:
        storage.NotFoundError: If the study has no per-persona study yet.
    """
    name = personas_study_name(study_name)
    try:
        study = optuna.load_study(study_name=name, storage=optuna_storage(url))
    except KeyError as exc:
        raise storage.NotFoundError(
            f"study {study_name!r} has no per-persona adapters yet: run "
            f"`hpo personas train --study {study_name}`"
        ) from exc
    found: dict[str, PersonaAdapter] = {}
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    stored = records.records_of(storage.open_storage(url), name, [t.number for t in complete])
    for t in sorted(complete, key=lambda t: t.number):
        fields = records.trial_fields(t.user_attrs, stored.get(t.number))
        key = t.user_attrs.get(PERSONA_ATTR)
        path, sha = fields.get(records.ADAPTER_PATH), fields.get(records.ADAPTER_SHA256)
        if key is None or path is None or sha is None:
            continue
        try:
            local = storage.fetch_artifact(layout, str(path), str(sha))
        except storage.ArtifactUnavailable:
            log.warning("persona %s: adapter of trial %d unavailable here", key, t.number)
            continue
        found[str(key)] = PersonaAdapter(str(key), local, str(sha))
    return found


def _fail_reason(engine: Any, name: str, trial: optuna.trial.FrozenTrial) -> str:
    """Why a persona trial (of study ``name``) failed: its record, else its attributes."""
    stored = records.records_of(engine, name, [trial.number])
    fields = records.trial_fields(trial.user_attrs, stored.get(trial.number))
    return str(fields.get(records.FAIL_REASON, "see the log"))
