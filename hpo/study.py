"""Race-safe study creation and loading on one SQL storage URL.

The study and our own tables share the database. Creation runs under a database-wide lock,
enqueues the seed configs once, records the exact trial budget, and refuses a config whose
objective or search space differs from the stored one.
"""

from __future__ import annotations

from typing import Any

import optuna

import storage
from hpo.config import StudyConfig, config_from_dict
from storage.locks import database_lock

CONFIG_ATTR = "hpo_config"
"""Study user attribute that holds the whole StudyConfig as JSON."""
HEARTBEAT_INTERVAL = 10
"""Seconds between heartbeats of a running trial."""
GRACE_PERIOD = 60
"""A trial without a heartbeat for this long is stale: failed and retried. Longer than a
short database outage, so that a restart does not fail live trials."""


class StudyConfigMismatch(ValueError):
    """The stored study was created with another objective or search space."""


def optuna_storage(
    url: str, *, heartbeat: bool = False, on_stale: Any = None, grace_period: int = GRACE_PERIOD
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage on the URL, pinging before use so it survives restarts; on
    SQLite its transactions take the write lock at BEGIN, as ours do, so that workers wait
    for each other instead of failing with "database is locked"."""
    url = storage.normalize_url(url)
    sqlite = url.startswith("sqlite")
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if sqlite:
        engine_kwargs["connect_args"] = {"timeout": 60}
    heartbeat_kwargs: dict[str, Any] = {}
    if heartbeat:
        heartbeat_kwargs = {
            "heartbeat_interval": min(HEARTBEAT_INTERVAL, max(1, grace_period // 3)),
            "grace_period": grace_period,
            "heartbeat_stale_trial_callback": on_stale,
        }
    rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat_kwargs)
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


def create_study(config: StudyConfig, url: str) -> optuna.Study:
    """Create the study (or load the same one), enqueue the seed trials, set the budget.

    Safe to call from several processes at once on a fresh database: exactly one study and
    one set of seed trials results.

    Raises:
        storage.NotFoundError: The dataset, its clustering or the cluster does not exist.
        StudyConfigMismatch: The stored study differs in dataset, cluster, search space,
            training or model config (the message lists each difference).
    """
    from hpo.pipeline import load_study_cluster

    name = config.study.name
    section = config.study
    engine = storage.create_engine(url)
    # One lock around our schema, Optuna's schema and the seeds: on a fresh SQLite file,
    # Optuna's table creation and ours would otherwise collide ("database is locked").
    with database_lock(engine, "create-study"):
        storage.init_schema(engine)
        # Unknown dataset, clustering or cluster: a clear error before any trial exists.
        load_study_cluster(engine, section)
        study = optuna.create_study(
            study_name=name, storage=optuna_storage(url), direction="minimize", load_if_exists=True
        )
        stored = study.user_attrs.get(CONFIG_ATTR)
        if stored is None:
            study.set_user_attr(CONFIG_ATTR, config.to_dict())
            for params in config.seed_trials:
                study.enqueue_trial(params, user_attrs={"seed_config": True}, skip_if_exists=True)
        else:
            diffs = _differences(config_from_dict(stored).identity(), config.identity())
            if diffs:
                raise StudyConfigMismatch(
                    f"study {name!r} exists with another config ({'; '.join(diffs[:3])}); "
                    "use another study name or the stored config"
                )
            if stored["study"]["n_trials"] != config.study.n_trials:
                study.set_user_attr(CONFIG_ATTR, config.to_dict())
        with storage.session_scope(engine) as session:
            storage.set_budget(session, name, config.study.n_trials)
    return study


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
        KeyError: No such study (the message names it and the storage).
    """
    storage.validate_name(name, what="study name")
    if rdb is None:
        rdb = optuna_storage(url, **storage_kwargs)
    elif storage_kwargs:
        raise TypeError(f"give either rdb or storage options, not both: {sorted(storage_kwargs)}")
    try:
        study = optuna.load_study(study_name=name, storage=rdb)
    except KeyError as exc:
        raise KeyError(
            f"no study named {name!r} in {storage.masked_url(url)}; "
            "create it with `hpo study create`"
        ) from exc
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        raise KeyError(f"study {name!r} was not created by `hpo study create` (no config)")
    return study, config_from_dict(stored, f"study {name}")
