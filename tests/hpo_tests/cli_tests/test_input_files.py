"""Only regular files are read: a FIFO, a device, a folder or a file over the limit given as a
dataset or a study config is refused at once, exit 2, one line naming it; nothing is written.
Click's own usage errors are one ``hpo: error:`` line too.

The commands run as real processes with a time limit (a FIFO would block ``open`` forever)
and a memory limit (``/dev/zero`` would be read until memory runs out)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import EXIT_BAD_INPUT
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line
from trainers.input_file import CONFIG_MAX_BYTES, DATASET_MAX_BYTES

TIMEOUT = 60
"""Seconds a refusal may take, Python's start and imports included, on a busy machine."""
MEMORY_LIMIT = 4 * 1024**3
"""Address space of the command: reading /dev/zero stops with MemoryError, not the machine."""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "hpo", *args, "--storage", f"sqlite:///{tmp_path}/hpo.db"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`hpo {' '.join(args)}` still ran after {TIMEOUT} s")


def _input(tmp_path: Path, kind: str, limit: int) -> str:
    """A path of ``kind``: a FIFO, /dev/zero, a folder, or a sparse file one byte over
    ``limit`` (no disk used)."""
    if kind == "fifo":
        path = tmp_path / "input.fifo"
        os.mkfifo(path)
        return str(path)
    if kind == "device":
        return "/dev/zero"
    if kind == "folder":
        path = tmp_path / "input.d"
        path.mkdir()
        return str(path)
    path = tmp_path / "input.big"
    with path.open("wb") as f:
        f.truncate(limit + 1)
    return str(path)


EXPECTED = {
    "fifo": "a FIFO (named pipe), not",
    "device": "a character device, not",
    "folder": "is a directory",
    "oversized": "over the limit of",
}

KINDS = sorted(EXPECTED)


@pytest.mark.parametrize("kind", KINDS)
def test_data_import_reads_only_a_regular_file(tmp_path: Path, kind: str) -> None:
    path = _input(tmp_path, kind, DATASET_MAX_BYTES)
    result = _run(tmp_path, "data", "import", path, "--name", "d")
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("hpo: error: ") and path in line and EXPECTED[kind] in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_study_create_reads_only_a_regular_config(tmp_path: Path, kind: str) -> None:
    path = _input(tmp_path, kind, CONFIG_MAX_BYTES)
    result = _run(tmp_path, "study", "create", "--config", path)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("hpo: error: ") and path in line and EXPECTED[kind] in line
    assert not (tmp_path / "hpo.db").exists()  # refused before the storage is opened


def test_the_limits_are_stated() -> None:
    assert DATASET_MAX_BYTES == 2 * 1024**3
    assert CONFIG_MAX_BYTES == 1024**2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("data", "cluster", "--dataset", "d", "--k", "-3"), "Invalid value for '--k'"),
        (("data", "import"), "Missing argument 'PATH'"),
        (("study", "best", "--bogus"), "No such option"),
        (("nosuch",), "No such command 'nosuch'"),
        (("--bogus",), "No such option"),
    ],
)
def test_usage_errors_are_one_line(hpo: Hpo, args: tuple[str, ...], expected: str) -> None:
    result = hpo(*args)
    assert result.exit_code == EXIT_BAD_INPUT
    line = one_line(result)
    assert line.startswith("hpo: error: ") and expected in line
    assert "--help" in line


def test_a_nested_config_and_a_bad_store_setting_are_one_line_exit_2(tmp_path: Path) -> None:
    """Issue 27: a deeply nested TOML config exited 1 with "maximum recursion depth exceeded"
    and no file name; a bad ``HPO_ARTIFACTS`` must be one line, exit 2, too. The real CLI."""
    config = tmp_path / "study.toml"
    deep = "[" * 100_000 + "1" + "]" * 100_000
    config.write_text(f'[study]\nname = "s"\ndataset = "d"\nx = {deep}\n', encoding="utf-8")
    result = _run(tmp_path, "study", "create", "--config", str(config))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line == f"hpo: error: {config}: line 4: nested deeper than 64 levels"
    assert not (tmp_path / "hpo.db").exists()  # refused before the storage is opened

    environment = {**os.environ, "HPO_ARTIFACTS": "ftp://example.org/store"}
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "worker", "--study", "s", "--output-root", str(tmp_path)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == EXIT_BAD_INPUT, done.stderr[-2000:]
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("hpo: error: HPO_ARTIFACTS='ftp://example.org/store': expected")
