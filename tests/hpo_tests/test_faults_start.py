"""Checks before burning trials: a worker whose output root is missing, not a folder,
read-only or full exits 2 with the reason before it asks for a trial; an unreachable
database is one line naming the URL with its password masked."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

import storage
from hpo.cli import cli
from hpo.study.config import packaged_config
from hpo.study.creation import load_study
from hpo.workers.worker import OutputRootError, check_output_root, run_worker
from tests.hpo_tests.test_workers import prepare, small_study_config


@contextlib.contextmanager
def _read_only_folder(path: Path) -> Iterator[Path]:
    """A folder that cannot be written: a read-only tmpfs as root (who ignores permission
    bits), a folder without write permission otherwise."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _invoke(*args: str) -> tuple[int, str]:
    """Exit code and the error output (``hpo: error: ...`` lines and any traceback)."""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stderr


def _nothing_asked(url: str, name: str) -> None:
    study, _ = load_study(url, name)
    states = {t.state for t in study.get_trials()}
    assert states == {optuna.trial.TrialState.WAITING}, states  # only the seeds, untouched
    with storage.session_scope(storage.open_storage(url)) as session:
        assert storage.budget(session, name) == (2, 0)


def test_a_bad_output_root_exits_2_before_any_trial(sqlite_url: str, tmp_path: Path) -> None:
    prepare(sqlite_url, tmp_path, small_study_config(name="root", n_trials=2))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = {
        tmp_path / "missing": "hpo: error: output root '{}' does not exist",
        a_file: "Directory '{}' is a file",  # refused by the --output-root option itself
    }
    for root, reason in cases.items():
        code, output = _invoke(
            "worker", "--study", "root", "--storage", sqlite_url, "--output-root", str(root)
        )
        assert code == 2, output
        assert reason.format(root) in output, output
        assert "Traceback" not in output
    with _read_only_folder(tmp_path / "ro") as root:
        code, output = _invoke(
            "worker", "--study", "root", "--storage", sqlite_url, "--output-root", str(root)
        )
        assert code == 2, output
        assert "is not writable" in output and str(root) in output
    _nothing_asked(sqlite_url, "root")


def test_a_full_output_root_is_refused_before_any_trial(sqlite_url: str, tmp_path: Path) -> None:
    prepare(sqlite_url, tmp_path, small_study_config(name="root", n_trials=2))
    with pytest.raises(OutputRootError, match="MiB free, less than"):
        run_worker(sqlite_url, "root", output_root=tmp_path, min_free_bytes=1 << 62)
    _nothing_asked(sqlite_url, "root")
    check_output_root(tmp_path)  # the same folder with room: accepted


@pytest.mark.parametrize(
    "command",
    [
        ["worker", "--study", "x", "--output-root", "."],
        ["study", "create", "--config", str(packaged_config("demo"))],
        ["study", "status", "--study", "x"],
        ["study", "list"],
        ["data", "cluster", "--dataset", "demo"],
        # the two that wait out an outage, each for a short patience (the default is 60 s)
        ["evaluator", "--study", "x", "--once", "--patience", "2"],
        ["report", "--study", "x", "--patience", "2"],
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_an_unreachable_database_is_one_line_with_the_password_masked(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql+psycopg://hpo:s3cret@127.0.0.1:9/hpo"  # the discard port: refused
    monkeypatch.chdir(tmp_path)
    code, output = _invoke(*command, "--storage", url)
    assert code == 1, output
    [line] = output.strip().splitlines()
    assert "postgresql+psycopg://hpo:***@127.0.0.1:9/hpo" in line, line
    assert "s3cret" not in output
    assert "sqlalche.me" not in line and "Is the server running" not in line
