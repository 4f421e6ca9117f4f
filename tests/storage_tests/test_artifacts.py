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
