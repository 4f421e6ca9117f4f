from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import (
    InvalidNameError,
    OutputLayout,
    atomic_directory,
    directory_sha256,
    get_artifact,
    record_artifact,
    session_scope,
    validate_name,
    verify_artifact,
)


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "a/b", "x\x00", "a'b", 'a"b', "", ".hidden", "..", "a" * 101]
)
def test_validate_name_rejects(name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid study name"):
        validate_name(name, what="study name")


@pytest.mark.parametrize("name", ["study-1", "a.b_c", "X", "a" * 100])
def test_validate_name_accepts(name: str) -> None:
    assert validate_name(name) == name


def test_layout_stays_under_root(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path / "out")
    assert layout.trial_adapter_dir("s1", 4) == tmp_path / "out/models/trials/s1/4"
    assert layout.cluster_adapter_dir(3) == tmp_path / "out/models/lora_clusters/cluster_03"
    assert layout.log_path("run") == tmp_path / "out/logs/run.log"
    assert layout.results_file("eval", "x.csv") == tmp_path / "out/results/eval/x.csv"
    assert layout.figures_dir() == tmp_path / "out/results/figures"
    assert layout.data_dir() == tmp_path / "out/data"
    with pytest.raises(InvalidNameError):
        layout.trial_adapter_dir("../../etc", 0)
    with pytest.raises(InvalidNameError):
        layout.results_file("eval", "../x")
    with pytest.raises(ValueError, match="trial number -1"):
        layout.trial_adapter_dir("s", -1)
    with pytest.raises(ValueError, match="cluster id True"):
        layout.cluster_adapter_dir(True)


def test_layout_refuses_symlink_escape(tmp_path: Path) -> None:
    (tmp_path / "out" / "results").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "results" / "eval")
    with pytest.raises(InvalidNameError, match="leaves the output root"):
        OutputLayout(tmp_path / "out").results_file("eval", "x.csv")


def test_atomic_directory(tmp_path: Path) -> None:
    final = tmp_path / "adapter"
    with atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"v1")
    assert (final / "weights.bin").read_bytes() == b"v1"
    with pytest.raises(OSError, match="disk full"), atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"half")
        raise OSError("disk full")
    assert (final / "weights.bin").read_bytes() == b"v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    with atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"v2")
    assert (final / "weights.bin").read_bytes() == b"v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_directory_sha256(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "sub" / "b.bin").write_bytes(b"defg")
    digest, size = directory_sha256(tmp_path)
    assert size == 7 and len(digest) == 64
    assert directory_sha256(tmp_path) == (digest, size)
    (tmp_path / "sub" / "b.bin").write_bytes(b"defh")
    assert directory_sha256(tmp_path)[0] != digest
    (tmp_path / "sub" / "b.bin").rename(tmp_path / "sub" / "c.bin")
    assert directory_sha256(tmp_path)[0] not in (digest,)


def test_record_get_verify(engine: sa.Engine, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    with atomic_directory(adapter) as tmp:
        (tmp / "w.bin").write_bytes(b"weights")
    digest, size = directory_sha256(adapter)
    with session_scope(engine) as session:
        first = record_artifact(
            session,
            kind="trial_adapter",
            path=Path("old"),
            sha256="0" * 64,
            size_bytes=1,
            study_name="s",
            trial_number=0,
        )
        again = record_artifact(
            session,
            kind="trial_adapter",
            path=adapter,
            sha256=digest,
            size_bytes=size,
            study_name="s",
            trial_number=0,
        )
        assert again == first
        record_artifact(
            session, kind="base_model", path=tmp_path, sha256="1" * 64, size_bytes=5 * 2**32
        )
    with session_scope(engine) as session:
        info = get_artifact(session, kind="trial_adapter", study_name="s", trial_number=0)
        base = get_artifact(session, kind="base_model", study_name=None, trial_number=None)
        assert get_artifact(session, kind="trial_adapter", study_name="s", trial_number=1) is None
        n = session.execute(sa.text("SELECT count(*) FROM artifacts")).scalar()
    assert n == 2
    assert info is not None and info.path == adapter and info.sha256 == digest
    assert base is not None and base.study_name is None and base.size_bytes == 5 * 2**32
    assert verify_artifact(info)
    (adapter / "w.bin").write_bytes(b"weightz")
    assert not verify_artifact(info)


HOLD_A_TEMP_FOLDER = """
import sys, time
from pathlib import Path
import storage
with storage.atomic_directory(Path(sys.argv[1])) as tmp:
    (tmp / "adapter_model.safetensors").write_bytes(b"half")
    print(tmp.name, flush=True)
    time.sleep(120)
"""


def test_temp_folders_no_live_process_holds_are_swept_at_start(tmp_path: Path) -> None:
    """A writer killed inside atomic_directory leaves `.tmp-<name>-<random>`: the next process
    that writes under the output root removes it at start (hpo.artifacts.output_layout), while
    one that a live process holds (its flock) is kept, in the MoE output as in the report's
    folder; a folder younger than the grace period is kept too (its writer may not have
    locked it yet)."""
    import signal
    import subprocess
    import sys

    from hpo.artifacts import output_layout
    from storage import OutputLayout, sweep_temp_folders
    from storage.atomic import temp_prefix

    layout = OutputLayout(tmp_path)
    moe = layout.study_adapter_dir("s", "moe_self", "p1").parent
    stale = [
        moe / (temp_prefix("tmp", "p0") + "dead1"),
        tmp_path / "results" / "s" / (temp_prefix("old", "comparison") + "dead2"),
    ]
    for folder in stale:
        folder.mkdir(parents=True)
        (folder / "part").write_text("x")
    fresh = moe / (temp_prefix("tmp", "p2") + "new")
    # another machine's (a shared output root: our lock may not reach it), and one of older code
    elsewhere = [moe / ".tmp-p3-0123abcd_xyz", moe / ".tmp-p4-abc"]
    for folder in [fresh, *elsewhere]:
        folder.mkdir()
    root = Path(__file__).resolve().parents[2]
    writer = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_TEMP_FOLDER, str(moe / "p1")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert writer.stdout is not None
        held = moe / writer.stdout.readline().strip()
        assert held.name.startswith(temp_prefix("tmp", "p1")) and held.is_dir()
        hour_ago = os.stat(held).st_mtime - 3600
        for folder in [*stale, held, *elsewhere]:
            os.utime(folder, (hour_ago, hour_ago))
        assert output_layout(tmp_path).root == tmp_path  # a process's start sweeps
        assert [p.exists() for p in stale] == [False, False]
        assert held.is_dir() and fresh.is_dir() and all(p.is_dir() for p in elsewhere)
        assert (held / "adapter_model.safetensors").read_bytes() == b"half"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    # killed mid-write: now nothing holds it, and the next start removes it
    assert sweep_temp_folders(layout) == [held]
    assert not (moe / "p1").exists() and fresh.is_dir()
