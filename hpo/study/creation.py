"""Race-safe, all-or-nothing study creation and loading on one SQL storage URL.

The study and our own tables share the database. :func:`create_study` checks everything
before it writes anything, then, under a database-wide lock, writes the trial budget, the
study, its seed trials, and last the stored config, which marks the study complete. Optuna
writes through its own sessions, so no single SQL transaction spans its tables and ours;
creation is atomic in effect instead: a failure part-way deletes what was written, and a study
left without its config by a killed process is deleted and created afresh by the next call.
Workers only load a study that has its config. A config that differs in any value from the
stored one is refused; the stored one is kept.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import optuna

import storage
from hpo.study.config import ConfigError, StudyConfig, config_from_dict
from hpo.study.records import CONFIG_REF_ATTR, has_config, save_config, stored_config
from hpo.study.strategies import make_pruner, make_sampler
from storage.locks import database_lock

logger = logging.getLogger(__name__)

SEED_ATTR = "seed_config"
"""Trial user attribute of the seed trials that creation enqueues."""
METRIC_NAME = "eval_loss"
"""The name of the study's one objective value (``Study.set_metric_names``)."""
HEARTBEAT_INTERVAL = 10
"""Seconds between heartbeats of a running trial."""
GRACE_PERIOD = 60
"""A trial without a heartbeat for this long is stale: failed and retried. Longer than a
short database outage, so that a restart does not fail live trials."""


class StudyConfigMismatch(ValueError):
    """The stored study was created with another config, or not by :func:`create_study`."""


class PatientRDBStorage(optuna.storages.RDBStorage):
    """An RDB storage whose calls wait out a database outage (see :class:`storage.OutageGuard`).

    Optuna calls its storage from inside ``Study.optimize`` (ask, report, tell, and the
    heartbeat thread), where the worker cannot wrap the calls; so the storage's public
    methods run through the guard. A heartbeat that fails past the guard's patience is logged,
    not raised: Optuna's heartbeat thread has no error handling and would end quietly, and the
    worker's next call gives up with the one-line error anyway.
    """

    def __init__(self, url: str, *, guard: storage.OutageGuard, **kwargs: Any) -> None:
        self.guard = guard
        super().__init__(url, **kwargs)

    def record_heartbeat(self, trial_id: int) -> None:
        """Record the trial's heartbeat, waiting out an outage; past it, log and go on."""
        try:
            self.guard.call(super().record_heartbeat, trial_id)
        except storage.DatabaseUnavailable as exc:
            logger.warning("heartbeat of trial id %d not recorded: %s", trial_id, exc)


def _through_guard(name: str) -> Any:
    method = getattr(optuna.storages.RDBStorage, name)

    def patient(self: PatientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self.guard.call(method, self, *args, **kwargs)

    patient.__name__ = name
    patient.__doc__ = f"``RDBStorage.{name}``, waiting out a database outage."
    return patient


_GUARDED_METHODS = (
    "create_new_trial",
    "set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_trial_id_from_study_id_trial_number",
    "get_best_trial",
    "get_study_id_from_name",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "set_study_user_attr",
    # Optuna wraps an RDB storage in its ``_CachedStorage``, which calls these private ones
    # instead of their public forms (ask, suggest, ``get_trials``, ``best_trial``, the
    # heartbeat's sweep of stale trials): unguarded, an outage between a report and the
    # pruner's look at the study failed the trial (CI, 2026-12-07).
    "_create_new_trial",
    "_set_trial_param",
    "_get_trials",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
)
"""The storage calls a worker makes, directly or through Optuna (ask, tell, report, sweep)."""
for _name in _GUARDED_METHODS:
    setattr(PatientRDBStorage, _name, _through_guard(_name))


def optuna_storage(
    url: str,
    *,
    heartbeat: bool = False,
    on_stale: Any = None,
    grace_period: int = GRACE_PERIOD,
    guard: storage.OutageGuard | None = None,
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage on the URL, pinging before use so it survives restarts; on
    SQLite its transactions take the write lock at BEGIN, as ours do, so that workers wait
    for each other instead of failing with "database is locked".

    Args:
        url: The storage URL.
        heartbeat: Record heartbeats of running trials and fail stale ones.
        on_stale: Called with each trial failed as stale (a re-queue callback).
        grace_period: Seconds without heartbeat after which a trial is stale.
        guard: Wait out database outages through it (a :class:`PatientRDBStorage`); None:
            a call made while the database is down fails at once.
    """
    url = storage.normalize_url(url)
    sqlite = url.startswith("sqlite")
    engine_kwargs = storage.engine_options(url)  # no pool on PostgreSQL: see its docstring
    heartbeat_kwargs: dict[str, Any] = {}
    if heartbeat:
        heartbeat_kwargs = {
            "heartbeat_interval": min(HEARTBEAT_INTERVAL, max(1, grace_period // 3)),
            "grace_period": grace_period,
            "heartbeat_stale_trial_callback": on_stale,
        }
    if guard is None:
        rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat_kwargs)
    else:
        rdb = PatientRDBStorage(url, guard=guard, engine_kwargs=engine_kwargs, **heartbeat_kwargs)
    if sqlite:
        storage.configure_sqlite(rdb.engine)
    return rdb


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [f"{prefix}: stored {a!r}, given {b!r}"]


def _check_strategies(config: StudyConfig, where: str) -> None:
    """Build the sampler and the pruner once, as every worker will."""
    for section, build in (
        ("sampler", lambda: make_sampler(config.sampler)),
        ("pruner", lambda: make_pruner(config.pruner)),
    ):
        try:
            build()
        except ValueError as exc:
            raise ConfigError(f"{where}: {section}: {exc}") from exc


def _check_base_model(config: StudyConfig, where: str) -> None:
    """The base model must be a decoder-only causal LM whose LoRA targets resolve
    (:func:`trainers.model_check.check_base_model` reads its config only; the tiny model
    is not read at all)."""
    from trainers.model_check import check_base_model

    try:
        found = check_base_model(config.model, target_modules=config.train.target_modules)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    logger.info("base model %s: %s", config.model.base_model, found)


def _existing_study(rdb: optuna.storages.RDBStorage, name: str) -> optuna.Study | None:
    """The complete study named ``name``, or None; deletes one left half-created."""
    try:
        study = optuna.load_study(study_name=name, storage=rdb)
    except KeyError:
        return None
    if has_config(study.user_attrs):
        return study
    trials = study.get_trials(deepcopy=False)
    waiting = optuna.trial.TrialState.WAITING
    if all(t.state == waiting and t.user_attrs.get(SEED_ATTR) for t in trials):
        logger.warning("study %r was left half-created (no config): deleting it", name)
        optuna.delete_study(study_name=name, storage=rdb)
        return None
    raise StudyConfigMismatch(
        f"study {name!r} exists with {len(trials)} trials but no stored config: it was not "
        "created by `hpo study create`; use another study name"
    )


def _stored(engine: Any, study: optuna.Study, name: str) -> StudyConfig:
    """The study's stored config (in ``study_records``, or the whole attribute of a study
    created before); raises storage.NotFoundError when it has none."""
    with storage.session_scope(engine) as session:
        found = stored_config(session, name, study.user_attrs)
    if found is None:
        raise storage.NotFoundError(
            f"study {name!r} was not created by `hpo study create` (no config)"
        )
    return config_from_dict(found, f"study {name}")


def _set_config(engine: Any, study: optuna.Study, config: StudyConfig) -> None:
    """Store the config record, then point the study at it (the pointer marks it complete)."""
    with storage.session_scope(engine) as session:
        pointer = save_config(session, study.study_name, config.to_dict())
    study.set_user_attr(CONFIG_REF_ATTR, pointer)


def _check_same_config(engine: Any, study: optuna.Study, config: StudyConfig) -> None:
    name = config.study.name
    stored = _stored(engine, study, name)
    diffs = _differences(stored.to_dict(), config.to_dict())
    if diffs:
        more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise StudyConfigMismatch(
            f"study {name!r} exists with another config ({'; '.join(diffs[:3])}{more}); "
            "the stored config is kept: create it again with that config, or use another "
            "study name"
        )


def _create_new(engine: Any, rdb: optuna.storages.RDBStorage, config: StudyConfig) -> optuna.Study:
    """Write budget, study, seed trials and (last) the config; undo all of it on failure."""
    name = config.study.name
    with storage.session_scope(engine) as session:
        # A fresh budget: a row left by an earlier study of this name keeps no claims.
        storage.delete_budget(session, name)
        storage.set_budget(session, name, config.study.n_trials, max_steps=config.study.max_steps)
    created = False
    try:
        study = optuna.create_study(study_name=name, storage=rdb, direction="minimize")
        created = True
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what we want
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAME])  # the dashboard labels the objective with it
        for params in config.seed_trials:
            study.enqueue_trial(params, user_attrs={SEED_ATTR: True}, skip_if_exists=True)
        _set_config(engine, study, config)
    except BaseException:
        _undo_create(engine, rdb, name, created)
        raise
    return study


def _undo_create(
    engine: Any, rdb: optuna.storages.RDBStorage, name: str, study_created: bool
) -> None:
    """Delete what a failed creation wrote; a failure here is logged, not raised over the
    original error (the next create also deletes a study left without its config)."""
    try:
        if study_created:
            optuna.delete_study(study_name=name, storage=rdb)
        with storage.session_scope(engine) as session:
            storage.delete_budget(session, name)
            storage.delete_study_records(session, name)
    except Exception:
        logger.exception("could not undo the half-created study %r", name)


def create_study(config: StudyConfig, url: str, *, where: str = "config") -> optuna.Study:
    """Create the study with its seed trials and budget, all or nothing, or load the same one.

    Checks before anything is written: the config's fields (on construction), the sampler and
    pruner (built once), a base model given as a local path, and the dataset, clustering and
    cluster. Safe to call from several processes at once on a fresh database: exactly one
    study, one budget and one set of seed trials results.

    Args:
        config: The study config.
        url: The SQL storage URL (our tables and Optuna's).
        where: The config's file name, the first word of a config error.

    Returns:
        The study.

    Raises:
        ConfigError: A sampler, pruner or local base model that cannot be used.
        storage.NotFoundError: The dataset, its clustering or the cluster does not exist.
        StudyConfigMismatch: A study of this name exists with another config (the message
            lists the differences; n_trials included: the stored one is kept), or was not
            created by this function.
    """
    from hpo.datasets import load_study_cluster

    _check_strategies(config, where)
    _check_base_model(config, where)
    name = config.study.name
    engine = storage.create_engine(url)
    # One lock around our schema, Optuna's schema and the study: on a fresh SQLite file,
    # Optuna's table creation and ours would otherwise collide ("database is locked").
    with database_lock(engine, "create-study"):
        storage.init_schema(engine)
        # Unknown dataset, clustering or cluster: a clear error before anything is written.
        load_study_cluster(engine, config.study)
        rdb = optuna_storage(url)
        study = _existing_study(rdb, name)
        if study is None:
            return _create_new(engine, rdb, config)
        _check_same_config(engine, study, config)
        with storage.session_scope(engine) as session:
            if storage.budget(session, name) is None:  # lost by an older version: restore
                storage.set_budget(
                    session, name, config.study.n_trials, max_steps=config.study.max_steps
                )
    return study


def raise_budget(url: str, name: str, n_trials: int) -> StudyConfig:
    """Raise a study's trial budget (``hpo study budget``), while its workers run or after.

    The budget row keeps its claimed tickets, so the raise stays exact under concurrency
    (see :mod:`storage.budget`): running workers claim the new tickets at their next trial,
    and a study that had finished resumes when workers start. The stored config records the
    new ``n_trials``; every other field stays as created (:func:`create_study` refuses a
    config that differs in any value, n_trials included).

    Args:
        url: The storage URL.
        name: The study.
        n_trials: The new total, at least the study's current one.

    Returns:
        The stored config, with the new ``n_trials``.

    Raises:
        storage.NotFoundError: No such study.
        ConfigError: ``n_trials`` below the current budget.
    """
    import dataclasses

    study, config = load_study(url, name)
    current = config.study.n_trials
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < current:
        raise ConfigError(
            f"n_trials={n_trials!r}: study {name!r} has a budget of {current} trials, and a "
            f"budget is only raised; give a number >= {current}"
        )
    raised = dataclasses.replace(config, study=dataclasses.replace(config.study, n_trials=n_trials))
    engine = storage.open_storage(url)
    with database_lock(engine, "create-study"):
        with storage.session_scope(engine) as session:
            storage.set_budget(session, name, n_trials, max_steps=config.study.max_steps)
        _set_config(engine, study, raised)
    return raised


def load_study(
    url: str,
    name: str,
    *,
    rdb: optuna.storages.RDBStorage | None = None,
    **storage_kwargs: Any,
) -> tuple[optuna.Study, StudyConfig]:
    """Load a study created by :func:`create_study`, with its stored config.

    Args:
        url: The storage URL.
        name: The study name.
        rdb: An Optuna storage already built on ``url`` by :func:`optuna_storage` (the worker
            keeps its own to look trials up); None builds one with ``storage_kwargs``.
        **storage_kwargs: Passed to :func:`optuna_storage` when ``rdb`` is None.

    Raises:
        storage.NotFoundError: No such study, or one not made by :func:`create_study` (the
            message names it and the storage): bad input.
    """
    storage.validate_name(name, what="study name")
    if rdb is None:
        rdb = optuna_storage(url, **storage_kwargs)
    elif storage_kwargs:
        raise TypeError(f"give either rdb or storage options, not both: {sorted(storage_kwargs)}")
    try:
        study = optuna.load_study(study_name=name, storage=rdb)
    except KeyError as exc:  # Optuna's way of saying "no such study"
        raise storage.NotFoundError(
            f"no study named {name!r} in {storage.masked_url(url)}; "
            "create it with `hpo study create`"
        ) from exc
    return study, _stored(storage.create_engine(url), study, name)
