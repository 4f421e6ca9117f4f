"""SQL over Optuna's tables (``optuna_tables``, ``optuna_schema``) against Optuna's own API,
on real studies in SQLite and PostgreSQL: counts, best trials (minimize, maximize,
infinities), pages, attributes and intermediate values; the schema check; reads that never
create a file nor block a writer."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa

import storage
from storage import optuna_schema, optuna_tables
from tests.conftest import PG_ADMIN_URL

State = optuna.trial.TrialState
SPACE = {
    "lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
    "rank": optuna.distributions.CategoricalDistribution((4, 8, 16)),
    "mode": optuna.distributions.CategoricalDistribution(("a", "b", None)),
    "epochs": optuna.distributions.IntDistribution(1, 5),
}
N_TRIALS = 200


def _trial(rng: random.Random, number: int) -> optuna.trial.FrozenTrial:
    params = {
        "lr": 10 ** rng.uniform(-5, -2),
        "rank": rng.choice((4, 8, 16)),
        "mode": rng.choice(("a", "b", None)),
        "epochs": rng.randint(1, 5),
    }
    curve: dict[int, float] = {s: rng.random() for s in range(1, rng.randint(1, 6))}
    if number % 17 == 3:
        curve[len(curve) + 1] = math.nan
    state = rng.choice((State.COMPLETE,) * 6 + (State.PRUNED, State.FAIL, State.WAITING))
    if number % 50 == 0:
        state = State.COMPLETE
    value: float | None = None
    if state == State.COMPLETE:
        # Ties (rounded values) and infinities, which Optuna keeps in a type column.
        value = round(rng.random(), 2) if number % 50 else (math.inf, -math.inf)[number % 100 // 50]
    attrs: dict[str, Any] = {"adapter_path": f"/m/{number}", "worker": number % 3}
    if state == State.FAIL:
        attrs = {"fail_reason": f"RuntimeError: {number}", "nested": {"a": [1, 2]}}
    return optuna.create_trial(
        state=state,
        value=value,
        params=params if state != State.WAITING else {},
        distributions=SPACE if state != State.WAITING else {},
        intermediate_values=curve if state in (State.PRUNED, State.COMPLETE) else {},
        user_attrs=attrs,
        system_attrs={"failed_trial": number - 1} if number % 23 == 5 else {},
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def studies(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``many`` (minimize, 200 mixed trials), ``up`` (maximize), ``two`` (two objectives),
    built once per backend for this module's read-only tests."""
    if request.param == "sqlite":
        yield _build(f"sqlite:///{tmp_path_factory.mktemp('tables') / 'hpo.db'}")
        return
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield _build(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    finally:
        storage.dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _build(storage_url: str) -> str:
    rdb = optuna.storages.RDBStorage(storage.normalize_url(storage_url))
    rng = random.Random(7)
    many = optuna.create_study(study_name="many", storage=rdb, direction="minimize")
    many.set_user_attr("hpo_config", {"study": {"n_trials": N_TRIALS}})
    many.add_trials(_trial(rng, n) for n in range(N_TRIALS))
    up = optuna.create_study(study_name="up", storage=rdb, direction="maximize")
    up.add_trials(_trial(rng, n) for n in range(20))
    two = optuna.create_study(study_name="two", storage=rdb, directions=["minimize", "maximize"])
    two.add_trial(optuna.create_trial(values=[1.0, 2.0]))
    rdb.engine.dispose()
    return storage_url


def _expected_best(study: optuna.Study, maximize: bool) -> list[int]:
    done = study.get_trials(states=(State.COMPLETE,))
    sign = -1 if maximize else 1
    return [t.number for t in sorted(done, key=lambda t: (sign * t.value, t.number))]


def test_trials_equal_optunas_api(studies: str) -> None:
    study = optuna.load_study(study_name="many", storage=studies)
    frozen = study.get_trials()
    with optuna_schema.read_session(studies) as session:
        assert session is not None
        found = optuna_tables.get_study(session, "many", user_attr_keys=("hpo_config",))
        ids = optuna_tables.trial_ids_page(session, found, limit=None, newest_first=False)
        stored = optuna_tables.get_trials(session, ids, system_attr_keys=("failed_trial",))
    assert [t.number for t in stored] == [t.number for t in frozen] == list(range(N_TRIALS))
    for s, t in zip(stored, frozen, strict=True):
        assert s.state == t.state.name
        assert s.value == t.value  # infinities included
        decoded = {
            name: optuna.distributions.json_to_distribution(dist).to_external_repr(value)
            for name, (value, dist) in s.params.items()
        }
        assert decoded == t.params
        assert s.user_attrs == t.user_attrs
        assert s.system_attrs == t.system_attrs
        if t.intermediate_values:
            step = max(t.intermediate_values)
            assert s.last_intermediate is not None and s.last_intermediate[0] == step
            want = t.intermediate_values[step]
            got = s.last_intermediate[1]
            assert got == want or (math.isnan(got) and math.isnan(want))
        else:
            assert s.last_intermediate is None
    assert found.counts == dict(Counter(t.state.name for t in frozen))
    assert found.user_attrs == {"hpo_config": {"study": {"n_trials": N_TRIALS}}}
    assert found.directions == ("MINIMIZE",)


def test_best_trials_in_optunas_order(studies: str) -> None:
    with optuna_schema.read_session(studies) as session:
        assert session is not None
        for name, maximize in (("many", False), ("up", True)):
            study = optuna.load_study(study_name=name, storage=studies)
            found = optuna_tables.get_study(session, name)
            expected = _expected_best(study, maximize)
            ids = optuna_tables.best_trial_ids(session, found, 10)
            numbers = [t.number for t in optuna_tables.get_trials(session, ids)]
            assert numbers == expected[:10]
            assert found.best_number == expected[0]
            assert found.best_value == study.best_value
            assert study.best_trial.value == study.get_trials()[found.best_number].value
        many = optuna_tables.get_study(session, "many")
        assert math.isinf(many.best_value or 0) and (many.best_value or 0) < 0
        two = optuna_tables.get_study(session, "two")
        assert (two.best_number, two.best_value) == (None, None)
        with pytest.raises(ValueError, match="2 objectives"):
            optuna_tables.best_trial_ids(session, two, 1)
        with pytest.raises(ValueError, match="n=0"):
            optuna_tables.best_trial_ids(session, many, 0)


def test_pages_and_the_study_list(studies: str) -> None:
    with optuna_schema.read_session(studies) as session:
        assert session is not None
        many = optuna_tables.get_study(session, "many")

        def numbers(**kw: Any) -> list[int]:
            ids = optuna_tables.trial_ids_page(session, many, **kw)
            return [t.number for t in optuna_tables.get_trials(session, ids)]

        assert numbers(limit=5) == [199, 198, 197, 196, 195]
        assert numbers(limit=3, offset=5) == [194, 193, 192]
        assert numbers(limit=3, offset=10, newest_first=False) == [10, 11, 12]
        assert numbers(limit=None, offset=198) == [1, 0]
        assert numbers(limit=10, offset=500) == []
        with pytest.raises(ValueError, match="limit=0"):
            optuna_tables.trial_ids_page(session, many, limit=0)
        with pytest.raises(ValueError, match="offset=-1"):
            optuna_tables.trial_ids_page(session, many, limit=1, offset=-1)
        listed = optuna_tables.list_studies(session)
        assert [s.name for s in listed] == ["many", "two", "up"]
        assert [s.directions for s in listed] == [
            ("MINIMIZE",),
            ("MINIMIZE", "MAXIMIZE"),
            ("MAXIMIZE",),
        ]
        assert listed[1].counts == {"COMPLETE": 1} and listed[0].user_attrs == {}
        with pytest.raises(storage.NotFoundError, match="'nosuch'"):
            optuna_tables.get_study(session, "nosuch")
        with pytest.raises(storage.NotFoundError, match="no trial with id 999999"):
            optuna_tables.get_trials(session, [999999])


def test_a_long_list_of_ids_is_read_in_batches(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(optuna_tables, "_IN_BATCH", 7)  # 30 trials: five batches of ids
    rdb = optuna.storages.RDBStorage(sqlite_url)
    study = optuna.create_study(study_name="wide", storage=rdb)
    study.add_trials(
        optuna.create_trial(value=float(n), params={"x": n}, distributions={"x": SPACE["epochs"]})
        for n in (1, 2, 3, 4, 5) * 6
    )
    with optuna_schema.read_session(sqlite_url) as session:
        assert session is not None
        wide = optuna_tables.get_study(session, "wide")
        ids = optuna_tables.trial_ids_page(session, wide, limit=None, newest_first=False)
        stored = optuna_tables.get_trials(session, ids[::-1])
    assert [t.number for t in stored] == list(range(30))[::-1]
    assert [t.value for t in stored] == [float(n) for n in (1, 2, 3, 4, 5) * 6][::-1]
    assert [t.params["x"][0] for t in stored] == [t.value for t in stored]


def test_no_file_no_tables_and_our_tables_alone_mean_no_studies(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with optuna_schema.read_session(f"sqlite:///{missing}") as session:
        assert session is None
    assert not missing.exists()  # a read never creates a database
    ours = f"sqlite:///{tmp_path / 'ours.db'}"
    storage.open_storage(ours)
    with optuna_schema.read_session(ours) as session:
        assert session is None


def test_an_unknown_optuna_schema_revision_is_refused_by_name(sqlite_url: str) -> None:
    optuna.create_study(study_name="s", storage=sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'v9.0.0.a'"))
    engine.dispose()
    refused = pytest.raises(storage.StorageError, match=r"revision v9\.0\.0\.a.*v3\.2\.0\.a")
    with refused, optuna_schema.read_session(sqlite_url):
        pass


def test_the_installed_optunas_schema_is_known(sqlite_url: str) -> None:
    """Fails when an Optuna upgrade brings a new schema: read its models.py, then add it."""
    rdb = optuna.storages.RDBStorage(sqlite_url)
    assert rdb.get_current_version() in optuna_schema.KNOWN_OPTUNA_REVISIONS
    assert rdb.get_head_version() in optuna_schema.KNOWN_OPTUNA_REVISIONS


def test_a_read_neither_writes_nor_blocks_a_writer_on_sqlite(sqlite_url: str) -> None:
    from hpo.study.creation import optuna_storage

    rdb = optuna_storage(sqlite_url)  # WAL and BEGIN IMMEDIATE, as the workers have
    study = optuna.create_study(study_name="s", storage=rdb)
    study.add_trial(optuna.create_trial(value=1.0))
    wrote = threading.Event()

    def writer() -> None:
        study.add_trial(optuna.create_trial(value=2.0))  # takes the write lock at BEGIN
        wrote.set()

    with optuna_schema.read_session(sqlite_url) as session:
        assert session is not None
        assert optuna_tables.get_study(session, "s").counts == {"COMPLETE": 1}
        thread = threading.Thread(target=writer)
        started = time.monotonic()
        thread.start()
        assert wrote.wait(20), "the writer waited for the open read"
        assert time.monotonic() - started < 20
        # The read keeps its snapshot, and cannot write.
        assert optuna_tables.get_study(session, "s").counts == {"COMPLETE": 1}
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            session.execute(sa.text("DELETE FROM trials"))
    thread.join()
    with optuna_schema.read_session(sqlite_url) as session:
        assert session is not None
        assert optuna_tables.get_study(session, "s").counts == {"COMPLETE": 2}
