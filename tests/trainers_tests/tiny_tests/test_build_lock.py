"""No silent waits: a process that waits for another's build of the tiny model says whom it
waits for (pid and host) at once and every few seconds, and the build logs its progress where
no terminal shows a bar."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from trainers.config import ModelConfig
from trainers.tiny.build_lock import build_holder, build_lock, holder_path, lock_path
from trainers.tiny.model import _progress, ensure_tiny_model, tiny_model_dir

HOLD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from trainers.tiny.build_lock import build_lock

    target, release = Path(sys.argv[1]), Path(sys.argv[2])
    with build_lock(target, notice_every=30):
        print("holding", flush=True)
        while not release.exists():
            time.sleep(0.05)
        # what a finished build leaves: the model folder with its build.json
        target.mkdir()
        (target / "build.json").write_text(json.dumps({"recipe": "stand-in"}))
    """
)


def _hold(target: Path, release: Path) -> subprocess.Popen[str]:
    """Another process that holds the build lock of ``target`` until ``release`` exists, then
    leaves a built folder; returns once it holds the lock."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target), str(release)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "holding"
    return process


def _waits(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in list(caplog.records)
        if "waiting for the tiny base model" in r.getMessage()
    ]


def test_a_waiter_names_the_builder_at_once_and_again_until_the_build_is_done(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ModelConfig(cache_dir=str(tmp_path))
    target = tiny_model_dir(config)
    release = tmp_path / "release"
    holder = _hold(target, release)
    found: list[Path] = []
    try:
        seen = build_holder(target)
        assert seen is not None and seen.pid == holder.pid
        assert f"pid {holder.pid} on " in seen.describe()
        with caplog.at_level(logging.WARNING, logger="trainers.tiny"):
            waiter = threading.Thread(
                target=lambda: found.append(ensure_tiny_model(config, notice_every=0.2))
            )
            waiter.start()
            # the builder finishes only once the waiter has said so three times: at once,
            # then after each notice interval
            deadline = time.monotonic() + 120
            while len(_waits(caplog)) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            release.touch()
            waiter.join(timeout=120)
    finally:
        release.touch()
        assert holder.wait(timeout=60) == 0
    assert found == [target]
    waits = _waits(caplog)
    assert len(waits) >= 3, waits
    assert all(f"pid {holder.pid} on " in line for line in waits), waits
    assert str(target.parent) in waits[0]
    # the waiter found the model built and did not build it again
    assert json.loads((target / "build.json").read_text()) == {"recipe": "stand-in"}
    assert not any("building the tiny base model" in r.getMessage() for r in caplog.records)
    assert build_holder(target) is None and not holder_path(target).exists()


def test_a_dead_builders_holder_file_is_no_build(tmp_path: Path) -> None:
    target = tmp_path / "model"
    holder_path(target).write_text(json.dumps({"pid": 999999, "host": "gone", "started": 0}))
    lock_path(target).touch()
    assert build_holder(target) is None  # nobody holds the lock
    with build_lock(target, notice_every=1):
        held = json.loads(holder_path(target).read_text())
        assert held["pid"] == os.getpid()  # the next builder overwrites it
    assert not holder_path(target).exists()
    with pytest.raises(ValueError, match="notice_every=0"), build_lock(target, notice_every=0):
        pass


def test_the_pretraining_logs_its_progress_where_no_bar_is_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="trainers.tiny"):
        steps = list(_progress(range(600), "pretraining the tiny base model"))
    assert steps == list(range(600))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert lines[0].startswith("pretraining the tiny base model: step 60 of 600, ")
    assert lines[-1].startswith("pretraining the tiny base model: step 600 of 600, ")


def test_hpo_launch_says_what_its_workers_wait_for(tmp_path: Path) -> None:
    from hpo.workers.launch import build_notices

    config = ModelConfig(cache_dir=str(tmp_path))
    target = tiny_model_dir(config)
    poll = build_notices(config, every=3600)
    assert poll() is None  # no build runs
    release = tmp_path / "release"
    holder = _hold(target, release)
    try:
        line = poll()
        assert line is not None and f"(pid {holder.pid} on " in line, line
        assert str(target.parent) in line
        assert poll() is None  # said once an hour at most
    finally:
        release.touch()
        assert holder.wait(timeout=60) == 0
    assert build_notices(config, every=0)() is None  # built now
    assert build_notices(ModelConfig(base_model="gpt2", cache_dir=str(tmp_path)))() is None
