"""The study queries answer from SQL and equal Optuna's API: a study of a few hundred trials
made as our workers leave them (seed, adapter paths, failures, pruning, retries), on SQLite and
PostgreSQL; ``hpo study list`` and the pages of ``hpo study trials``."""

from __future__ import annotations

import json
import random
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import storage
from hpo.cli import EXIT_BAD_INPUT, cli
from hpo.study.config import StudyConfig, StudySection
from hpo.study.creation import optuna_storage
from hpo.study.queries import (
    DEFAULT_PAGE_SIZE,
    all_trials,
    best_trials,
    list_studies,
    retried_trial_number,
    study_status,
    trials_page,
)
from hpo.study.records import CONFIG_ATTR

State = optuna.trial.TrialState
NAME = "sql"
SMALL = "sql-small"
N_TRIALS = 150
TOTAL = N_TRIALS + 3
"""With the three retries of failed trials (one completed, one running, one waiting)."""
SPACE = {
    "epochs": optuna.distributions.IntDistribution(1, 5),
    "batch_size": optuna.distributions.CategoricalDistribution((2, 4, 8)),
    "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
    "lora_rank": optuna.distributions.CategoricalDistribution((4, 8, 16)),
}


def _worker_trial(rng: random.Random, number: int) -> optuna.trial.FrozenTrial:
    """A trial as a worker leaves it."""
    params = {
        "epochs": rng.randint(1, 5),
        "batch_size": rng.choice((2, 4, 8)),
        "learning_rate": 10 ** rng.uniform(-5, -3),
        "lora_rank": rng.choice((4, 8, 16)),
    }
    curve = {step: rng.random() + 0.1 for step in range(1, rng.randint(2, 8))}
    roll = rng.random()
    if roll < 0.15:
        attrs: dict[str, Any] = {"fail_reason": f"RuntimeError: trial {number}"}
        if roll < 0.05:
            attrs = {}  # a worker lost without a reason
        return optuna.create_trial(
            state=State.FAIL, params=params, distributions=SPACE, user_attrs=attrs
        )
    if roll < 0.35:
        return optuna.create_trial(
            state=State.PRUNED, params=params, distributions=SPACE, intermediate_values=curve
        )
    return optuna.create_trial(
        state=State.COMPLETE,
        value=round(curve[max(curve)], 2),  # ties: the lower number first
        params=params,
        distributions=SPACE,
        intermediate_values=curve,
        user_attrs={
            "adapter_path": f"models/trials/{NAME}/{number}",
            "seed_config": number < 3,
            "adapter_sha256": "0" * 64,
        },
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Our study of N_TRIALS worker-like trials, retries among them, a small one of 12, and
    a study of another tool (no config); built once per backend, read only by the tests."""
    if request.param == "sqlite":
        yield _build(f"sqlite:///{tmp_path_factory.mktemp('queries') / 'hpo.db'}")
        return
    from tests.conftest import PG_ADMIN_URL

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hpo_test_q{random.getrandbits(40):010x}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield _build(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    finally:
        storage.dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _build(url: str) -> str:
    rdb = optuna_storage(url)
    study = optuna.create_study(study_name=NAME, storage=rdb, direction="minimize")
    study.set_user_attr(CONFIG_ATTR, StudyConfig(study=StudySection(name=NAME)).to_dict())
    rng = random.Random(3)
    study.add_trials(_worker_trial(rng, n) for n in range(N_TRIALS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback()
    failed = [t for t in study.get_trials() if t.state == State.FAIL][:3]
    for t in failed:  # re-queued with the same parameters, as after a lost worker
        retry(study, t)
    retried = study.ask()
    study.tell(retried, 0.05)  # the best trial is a retry
    study.ask()  # a retry left RUNNING, one left WAITING
    small = optuna.create_study(study_name=SMALL, storage=rdb, direction="minimize")
    small.set_user_attr(CONFIG_ATTR, StudyConfig(study=StudySection(name=SMALL)).to_dict())
    small.add_trials(_worker_trial(rng, n) for n in range(12))
    other = optuna.create_study(study_name="another-tool", storage=rdb, direction="maximize")
    other.add_trial(optuna.create_trial(value=3.0))
    other.add_trial(optuna.create_trial(value=7.0))
    rdb.engine.dispose()
    return url


def _expected(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """What a row must say, from Optuna's API alone."""
    retried = retried_trial_number(t)
    note = "" if retried is None else f"retry of trial {retried}"
    if t.state == State.FAIL:
        reason = t.user_attrs.get("fail_reason") or "worker lost (no heartbeat)"
        note = reason if retried is None else f"{reason}; retry of trial {retried}"
    elif t.state == State.PRUNED and t.intermediate_values:
        step = max(t.intermediate_values)
        note = f"pruned at evaluation {step} (eval_loss {t.intermediate_values[step]:.4f})"
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "params": t.params,
        "adapter_path": t.user_attrs.get("adapter_path"),
        "seed_config": bool(t.user_attrs.get("seed_config")),
        "note": note,
        "similarity": None,  # no trial of this study is evaluated (ours, not Optuna's)
        "promoted": False,
    }


def _frozen(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=NAME, storage=optuna_storage(url)).get_trials()


def refuse_optuna_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, loading trials through Optuna's API fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a query loaded trials through Optuna's API")

    monkeypatch.setattr(optuna.Study, "get_trials", refuse)
    monkeypatch.setattr(optuna.storages.RDBStorage, "get_all_trials", refuse)


def _complete_sorted(frozen: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    done = [t for t in frozen if t.state == State.COMPLETE]
    return sorted(done, key=lambda t: (t.value, t.number))


def test_every_row_equals_optunas_api(url: str) -> None:
    frozen = _frozen(url)
    assert len(frozen) == TOTAL
    rows = all_trials(url, NAME)
    assert [r.to_dict() for r in rows] == [_expected(t) for t in frozen]
    notes = [r.note for r in rows]
    assert sum("retry of trial" in n for n in notes) == 3  # completed, running, waiting
    assert "worker lost (no heartbeat)" in notes
    assert any(n.startswith("pruned at evaluation") for n in notes)
    assert [r.number for r in rows if r.seed_config] == [
        t.number for t in frozen[:3] if t.state == State.COMPLETE
    ]


def test_best_status_and_pages_equal_optunas_api(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = _frozen(url)
    best = [_expected(t) for t in _complete_sorted(frozen)]
    counts = dict(Counter(t.state.name for t in frozen))
    refuse_optuna_api(monkeypatch)

    assert [r.to_dict() for r in best_trials(url, NAME, 10)] == best[:10]
    assert best[0]["note"].startswith("retry of trial")  # the retry is the best trial
    status = study_status(url, NAME)
    assert status.counts == counts and status.counts["RUNNING"] == 1
    assert status.best is not None and status.best.to_dict() == best[0]
    assert status.n_trials_target == StudySection(name=NAME).n_trials

    newest = trials_page(url, NAME)
    assert newest.total == len(frozen)
    assert [r.to_dict() for r in newest.rows] == [
        _expected(t) for t in frozen[::-1][:DEFAULT_PAGE_SIZE]
    ]
    page = trials_page(url, NAME, limit=7, offset=20, newest_first=False)
    assert [r.to_dict() for r in page.rows] == [_expected(t) for t in frozen[20:27]]
    assert trials_page(url, NAME, limit=5, offset=len(frozen)).rows == []


def test_the_study_list(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = _frozen(url)
    best = _complete_sorted(frozen)[0]
    refuse_optuna_api(monkeypatch)
    listed = {row.name: row for row in list_studies(url)}
    assert sorted(listed) == ["another-tool", NAME, SMALL]
    ours, theirs = listed[NAME], listed["another-tool"]
    assert ours.n_trials_target == StudySection(name=NAME).n_trials
    assert ours.counts == dict(Counter(t.state.name for t in frozen))
    assert ours.total == len(frozen)
    assert (ours.best_number, ours.best_value) == (best.number, best.value)
    # Not made by `hpo study create`: listed without a target; maximized: its best is 7.
    assert (theirs.n_trials_target, theirs.best_number, theirs.best_value) == (None, 1, 7.0)
    with pytest.raises(storage.NotFoundError, match="not created by `hpo study create`"):
        best_trials(url, "another-tool")


def test_the_number_of_statements_does_not_grow_with_the_trials(url: str) -> None:
    """Best and status read a handful of rows with a fixed number of statements, however many
    trials the study has (Optuna's API reads every trial)."""

    def statements(name: str) -> tuple[int, int]:
        seen: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            seen.append(statement)

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
        try:
            best_trials(url, name, 5)
            n_best = len(seen)
            study_status(url, name)
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
        return n_best, len(seen) - n_best

    assert statements(NAME) == statements(SMALL)


def test_cli_list_and_pages(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def hpo(*args: str) -> Result:
        return runner.invoke(cli, [*args, "--storage", url], prog_name="hpo")

    result = hpo("study", "list")
    assert result.exit_code == 0, result.output
    assert NAME in result.stdout and "another-tool" in result.stdout
    listed = json.loads(hpo("study", "list", "--json").stdout)
    assert [s["name"] for s in listed] == ["another-tool", NAME, SMALL]
    assert listed[1]["total"] == TOTAL and listed[0]["n_trials_target"] is None

    def numbers(*args: str) -> list[int]:
        result = hpo("study", "trials", "--study", NAME, "--json", *args)
        assert result.exit_code == 0, result.output
        return [t["number"] for t in json.loads(result.stdout)]

    last = TOTAL - 1
    assert numbers() == list(range(last, last - DEFAULT_PAGE_SIZE, -1))
    assert numbers("--limit", "3", "--offset", "2") == [last - 2, last - 3, last - 4]
    assert numbers("--oldest-first", "--limit", "2") == [0, 1]
    assert numbers("--limit", "0") == list(range(last, -1, -1))
    table = hpo("study", "trials", "--study", NAME, "--limit", "4")
    assert f"trials of {NAME} (1-4 of {TOTAL}, newest first)" in table.stdout
    refused = hpo("study", "trials", "--study", NAME, "--offset", "-1")
    assert refused.exit_code == EXIT_BAD_INPUT and "--offset" in refused.stderr


def test_list_of_an_empty_or_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    assert list_studies(f"sqlite:///{missing}") == []
    assert not missing.exists()
    result = CliRunner().invoke(
        cli, ["study", "list", "--storage", f"sqlite:///{missing}"], prog_name="hpo"
    )
    assert result.exit_code == 0 and "no study in" in result.stdout
    with pytest.raises(storage.NotFoundError, match="no study named 'nosuch'"):
        study_status(f"sqlite:///{missing}", "nosuch")
    assert not missing.exists()
