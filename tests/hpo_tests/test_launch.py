"""The launcher pins one GPU per worker and shares CPU cores between CPU workers."""

from __future__ import annotations

import subprocess
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
    from hpo.workers.launch import assign_gpus

    assert assign_gpus(3, []) == [None, None, None]
    assert assign_gpus(3, ["0", "1"]) == ["0", "1", "0"]
    assert assign_gpus(2, ["3", "5", "7"]) == ["3", "5"]


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo.workers.launch import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []  # nothing visible: the CPU, said so by hpo launch
