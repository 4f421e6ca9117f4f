"""The launcher pins one GPU per worker and shares CPU cores between CPU workers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hpo.workers import launch


class _FakePopen:
    started: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, cmd: list[str], **kwargs: Any) -> None:
        self.cmd = cmd
        self.env = kwargs["env"]
        self.pid = 1000 + len(self.started)
        self.returncode = 0
        _FakePopen.started.append({"cmd": cmd, "env": kwargs["env"]})

    def poll(self) -> int:
        return 0


@pytest.fixture
def fake_popen(monkeypatch: pytest.MonkeyPatch) -> type[_FakePopen]:
    _FakePopen.started = []
    monkeypatch.setattr(subprocess, "Popen", _FakePopen)
    return _FakePopen


def test_one_gpu_per_worker(fake_popen: type[_FakePopen], tmp_path: Path) -> None:
    workers = launch.start_workers("sqlite:///x.db", "s", gpus=["0", "3"], output_root=tmp_path)
    assert [w.gpu for w in workers] == ["0", "3"]
    envs = [s["env"] for s in fake_popen.started]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "3"]
    cmds = [s["cmd"] for s in fake_popen.started]
    assert all(c[1:4] == ["-m", "hpo", "worker"] for c in cmds)
    assert [c[c.index("--worker-index") + 1] for c in cmds] == ["0", "1"]
    # the URL travels in the environment, never on the command line (`ps` shows that)
    assert all("--storage" not in c and "sqlite:///x.db" not in c for c in cmds)
    assert [e["HPO_STORAGE"] for e in envs] == ["sqlite:///x.db"] * 2
    assert launch.wait_for_workers(workers, interval=0) == [0, 0]


def test_cpu_workers_share_the_cores(
    fake_popen: type[_FakePopen], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 8)
    launch.start_workers("sqlite:///x.db", "s", n_workers=4, output_root=tmp_path)
    assert len(fake_popen.started) == 4  # the loop below checks each of them
    for started in fake_popen.started:
        assert started["env"]["CUDA_VISIBLE_DEVICES"] == ""
        assert started["env"]["OMP_NUM_THREADS"] == "2"
        assert started["cmd"][started["cmd"].index("--threads") + 1] == "2"


def test_needs_workers_or_gpus(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_workers"):
        launch.start_workers("sqlite:///x.db", "s", output_root=tmp_path)


def test_threads_per_worker_divides_the_cores() -> None:
    assert launch.threads_per_worker(4, cores=8) == 2
    assert launch.threads_per_worker(3, cores=8) == 2
    assert launch.threads_per_worker(3, cores=2) == 1  # never 0
    assert launch.threads_per_worker(1, cores=16) == 16
    with pytest.raises(ValueError, match="workers_on_machine=0"):
        launch.threads_per_worker(0)


def test_gpu_workers_share_the_cores_too(
    fake_popen: type[_FakePopen], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 16)
    launch.start_workers("sqlite:///x.db", "s", gpus=["0", "1", "2", "3"], output_root=tmp_path)
    for started in fake_popen.started:
        assert started["cmd"][started["cmd"].index("--threads") + 1] == "4"
        assert started["env"]["OMP_NUM_THREADS"] == "4"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {}, 8),  # alone on the machine: all its cores
        (("--local-workers", "4"), {}, 2),  # what `hpo launch --workers 4` gives each
        ((), {"HPO_LOCAL_WORKERS": "2"}, 4),
        (("--local-workers", "4", "--threads", "3"), {}, 3),  # --threads wins
    ],
)
def test_a_standalone_worker_takes_what_launch_would_give_it(
    fake_popen: type[_FakePopen],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    env: dict[str, str],
    expected: int,
) -> None:
    """The same rule for `hpo worker` by hand as for the workers `hpo launch` starts."""
    from click.testing import CliRunner

    from hpo.cli import cli
    from hpo.workers import worker

    monkeypatch.setattr(launch.os, "cpu_count", lambda: 8)
    seen: dict[str, Any] = {}

    def run_worker(url: str, name: str, **kwargs: Any) -> worker.WorkerSummary:
        seen.update(kwargs)
        return worker.WorkerSummary(kwargs["worker_index"])

    monkeypatch.setattr(worker, "run_worker", run_worker)
    monkeypatch.delenv("HPO_LOCAL_WORKERS", raising=False)
    command = ["worker", "--study", "s", "--storage", f"sqlite:///{tmp_path}/x.db", *args]
    result = CliRunner().invoke(cli, command, env=env, prog_name="hpo")
    assert result.exit_code == 0, result.output
    assert seen["threads"] == expected
    if not args and not env:
        launch.start_workers("sqlite:///x.db", "s", n_workers=1, output_root=tmp_path)
        cmd = fake_popen.started[0]["cmd"]
        assert int(cmd[cmd.index("--threads") + 1]) == expected


def test_workers_get_one_device_each_gpus_in_turn_or_the_cpu() -> None:
    from hpo.workers.gpus import assign_gpus

    assert assign_gpus(3, []) == [None, None, None]
    assert assign_gpus(3, ["0", "1"]) == ["0", "1", "0"]
    assert assign_gpus(2, ["3", "5", "7"]) == ["3", "5"]


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo.workers.gpus import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []  # nothing visible: the CPU, said so by hpo launch


# --- several workers per GPU: the plan, on fake GPUs --------------------------------------


def test_two_workers_per_gpu_on_two_gpus(
    fake_popen: type[_FakePopen], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hpo launch --workers-per-gpu 2` on a machine whose GPUs are 0 and 1: four processes,
    two pinned to each GPU, spread as --workers 4 would spread them, sharing the cores."""
    from hpo.workers.gpus import plan_devices

    plan = plan_devices(per_gpu=2, visible=["0", "1"])
    assert plan == ["0", "1", "0", "1"] == plan_devices(n_workers=4, visible=["0", "1"])
    assert plan_devices(gpus=["3", "5"], per_gpu=2, visible=["0"]) == ["3", "5", "3", "5"]
    assert plan_devices(gpus=["3"]) == ["3"]  # default: one each
    assert plan_devices(n_workers=2) == [None, None]  # no GPU: the CPU
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 16)
    workers = launch.start_workers("sqlite:///x.db", "s", gpus=plan, output_root=tmp_path)
    assert [(w.index, w.gpu) for w in workers] == [(0, "0"), (1, "1"), (2, "0"), (3, "1")]
    envs = [s["env"] for s in fake_popen.started]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0", "1"]
    assert [e["OMP_NUM_THREADS"] for e in envs] == ["4"] * 4
    for wrong, message in (
        ({"per_gpu": 2}, "no GPU visible"),
        ({"per_gpu": 0, "visible": ["0"]}, "--workers-per-gpu 0: expected 1 or more"),
        ({"n_workers": 2, "per_gpu": 2, "visible": ["0"]}, "--workers-per-gpu goes with --gpus"),
    ):
        with pytest.raises(ValueError, match=message):
            plan_devices(**wrong)  # type: ignore[arg-type]


def test_the_weights_warning_names_each_card_that_cannot_hold_its_copies() -> None:
    from hpo.workers.gpus import GIB, memory_warning, parse_gpu_memory

    memory = parse_gpu_memory("0, 81559\n1, 40960\nnot a gpu line\n")
    assert memory == {"0": 81559 * 2**20, "1": 40 * GIB}
    plan = ["0", "1", "0", "1", "1"]  # 2 workers on GPU 0, 3 on GPU 1
    assert memory_warning(plan, 16 * GIB, memory) == (
        "warning: the workers' copies of the base model's weights exceed the card's memory "
        "(GPU 1: 3 x 16.0 = 48.0 GiB of 40.0 GiB); expect out-of-memory errors: start fewer "
        "workers per GPU"
    )
    assert memory_warning(plan, 13 * GIB, memory) is None  # 39 GiB fit on GPU 1
    assert "GPU 0" not in str(memory_warning(plan, 50 * GIB, {"1": 40 * GIB}))  # not judged
    assert "GPU 0: 2 x 50.0 = 100.0 GiB of 79.6 GiB" in str(memory_warning(plan, 50 * GIB, memory))
    assert memory_warning([None, None], 50 * GIB, memory) is None  # CPU workers


def test_the_weights_of_a_real_model_are_estimated_from_its_config_alone() -> None:
    """The estimate `hpo launch` compares with a card's memory, on the tiny model: counted on
    the meta device from its config.json (tied embeddings once), it is the parameter count
    the build recorded, at 2 bytes each (bf16)."""
    import json

    from hpo.workers.gpus import weights_warning
    from trainers.config import ModelConfig
    from trainers.model_check import weight_bytes
    from trainers.tiny import ensure_tiny_model

    folder = ensure_tiny_model(ModelConfig())
    params = json.loads((folder / "build.json").read_text())["parameters"]
    assert weight_bytes(ModelConfig(base_model=str(folder))) == 2 * params
    assert weight_bytes(ModelConfig()) == 2 * params  # the tiny model: its build's record
    two = 4 * params  # two copies
    assert weights_warning(["0", "0"], ModelConfig(), {"0": two}) is None
    warning = weights_warning(["0", "0"], ModelConfig(), {"0": two - 1})
    assert warning is not None and warning.startswith("warning: ") and "GPU 0: 2 x" in warning
    assert weights_warning(["0", "0"], ModelConfig(), {}) is None  # no nvidia-smi: no judgement


# --- supervision: signals passed on, a failing launcher stops its workers -------------------


def _sleeper(tmp_path: Path, index: int) -> launch.WorkerProcess:
    """A stand-in worker process that exits 130 on SIGTERM, as `hpo worker` does."""
    import sys

    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(130)); "
        "print('ready', flush=True); time.sleep(60)"
    )
    log_path = tmp_path / f"w{index}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log)
    while b"ready" not in log_path.read_bytes():
        assert proc.poll() is None
        time.sleep(0.02)
    return launch.WorkerProcess(index, proc, log_path, None)


def test_a_signal_to_the_launcher_reaches_every_worker(tmp_path: Path) -> None:
    workers = [_sleeper(tmp_path, i) for i in range(2)]
    polls: list[int] = []

    def poll() -> None:
        polls.append(1)
        os.kill(os.getpid(), signal.SIGTERM)  # docker stop, scancel, a scheduler

    ended = launch.supervise(workers, poll=poll, interval=0.05)
    assert ended == launch.Supervision([130, 130], signal.SIGTERM)
    assert not ended.succeeded and len(polls) == 1  # no progress once stopping
    line = launch.exit_line(workers[0], 130)
    assert line == (
        f"worker 0 (pid {workers[0].process.pid}, cpu): exit 130 (stopped by signal: its "
        f"running trial, if any, re-queued), log {workers[0].log_path}"
    )
    assert launch.exit_line(workers[1], -9).endswith(f"(killed by SIGKILL), log {tmp_path}/w1.log")


def test_a_launcher_that_fails_stops_its_workers_first(tmp_path: Path) -> None:
    workers = [_sleeper(tmp_path, 0)]

    def poll() -> None:
        raise RuntimeError("a bug in the progress")

    with pytest.raises(RuntimeError, match="a bug"):
        launch.supervise(workers, poll=poll, interval=0.05)
    assert workers[0].process.returncode == 130  # stopped and waited for, not left behind


def test_the_progress_waits_out_an_outage_and_says_once_when_it_is_past_the_patience() -> None:
    import sqlalchemy as sa

    import storage

    now = [0.0]
    guard = storage.OutageGuard("postgresql://u:pw@db/hpo", 10, clock=lambda: now[0])
    down = [True]
    said: list[str] = []

    def refresh() -> None:
        if down[0]:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    poll = launch.patient_poll(refresh, guard, said.append)
    for t in (0.0, 4.0, 9.0):  # within the patience: skipped without a word or a pause
        now[0] = t
        poll()
    assert said == [] and guard.down_for == 9.0
    for t in (10.0, 12.0, 14.0):
        now[0] = t
        poll()
    assert said == [
        "database postgresql://u:***@db/hpo unreachable for 10 s, longer than the 10 s a "
        "worker waits (its heartbeat grace period): connection refused; the launcher stays "
        "with its workers"
    ]
    down[0] = False
    poll()
    assert guard.down_for is None
    down[0], now[0] = True, 30.0
    for t in (30.0, 45.0):  # a second outage past the patience: said again
        now[0] = t
        poll()
    assert len(said) == 2


def test_a_signal_while_the_workers_start_is_passed_on_once_they_exist(tmp_path: Path) -> None:
    """`hpo launch` catches the stop signals before it starts its workers: one that comes in
    between is not lost (nor the launcher killed by it, its workers left behind)."""
    before = signal.getsignal(signal.SIGTERM)
    with launch.stop_signals() as received:
        os.kill(os.getpid(), signal.SIGTERM)  # while the workers are being started
        workers = [_sleeper(tmp_path, 0)]
        ended = launch.supervise(
            workers, poll=lambda: pytest.fail("polled"), interval=0.05, received=received
        )
    assert ended == launch.Supervision([130], signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are given back
