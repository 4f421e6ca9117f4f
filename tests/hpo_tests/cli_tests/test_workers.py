"""``hpo worker`` and ``hpo launch``: what they refuse before any trial or process starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import EXIT_BAD_INPUT
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("worker", "--study", "s", "--threads", "0"), "--threads"),
        (("worker", "--study", "s", "--grace-period", "0"), "--grace-period"),
        (("worker", "--study", "s", "--max-trials", "0"), "--max-trials"),
        (("launch", "--study", "s", "--workers", "0"), "--workers"),
        (("launch", "--study", "s", "--gpus", " , "), "--gpus"),
        (("launch", "--study", "s", "--workers-per-gpu", "0"), "--workers-per-gpu"),
        (("launch", "--study", "s", "--grace-period", "0"), "--grace-period"),
    ],
)
def test_counts_and_lists_are_checked_naming_the_flag(
    hpo: Hpo, args: tuple[str, ...], flag: str
) -> None:
    result = hpo(*args)
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"Invalid value for '{flag}'" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either --workers N or --gpus IDS (or --workers-per-gpu N)"),
        (("--workers", "2", "--gpus", "0,1"), "give either --workers N or --gpus IDS, not both"),
        (
            ("--workers", "2", "--workers-per-gpu", "2"),
            "--workers N spreads N workers over the visible GPUs; --workers-per-gpu goes with "
            "--gpus IDS or alone (every visible GPU)",
        ),
        (
            ("--workers-per-gpu", "2"),  # CUDA_VISIBLE_DEVICES is empty: no GPU
            "no GPU visible (nvidia-smi, CUDA_VISIBLE_DEVICES): --workers-per-gpu needs GPUs; "
            "give --workers N for workers on the CPU",
        ),
        (
            ("--slurm", "--workers", "2", "--workers-per-gpu", "2"),
            "--workers-per-gpu is for workers on this machine, not with --slurm",
        ),
        (
            ("--slurm", "--workers", "2", "--grace-period", "9"),
            "--grace-period is for workers on this machine, not with --slurm",
        ),
    ],
)
def test_launch_wants_workers_or_gpus(
    hpo: Hpo, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], message: str
) -> None:
    """Checked before the study is read (there is no study "s") or any process starts."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = hpo("launch", "--study", "s", *args)
    assert result.exit_code == EXIT_BAD_INPUT
    assert message in one_line(result)


def test_launch_refuses_an_unknown_study_before_starting_workers(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    result = hpo("launch", "--study", "nosuch", "--workers", "2", "--storage", url)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no study named 'nosuch'" in one_line(result)
    assert not (tmp_path / "logs").exists()  # no worker was started


def test_worker_on_an_unknown_study_is_bad_input(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    result = hpo("worker", "--study", "nosuch", "--storage", url, "--output-root", tmp_path)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no study named 'nosuch'" in result.stderr


def test_a_worker_log_has_no_repeated_alembic_plugin_lines(tmp_path: Path) -> None:
    """A worker logs at INFO; checking the schema made Alembic log seven 'setup plugin'
    lines at every process start (the worst repeated block of the demo's worker logs). The
    migrations themselves are still logged, and the error is one line."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "worker", "--study", "nope", "--storage", url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert "Running upgrade" in done.stderr
    assert "setup plugin" not in done.stderr
    assert "hpo: error: no study named 'nope'" in done.stderr


def test_launch_help_names_the_workers_per_gpu_and_what_the_launcher_promises(hpo: Hpo) -> None:
    result = hpo("launch", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    per_gpu = "--workers-per-gpu N N workers on each GPU of --gpus, or alone on each visible GPU"
    assert per_gpu in text
    assert "warns when N copies of the base model's weights exceed a card's memory" in text
    assert "[default: 1]" in text and "[default: 60]" in text
    assert "hpo launch --study cluster4 --workers-per-gpu 2" in result.output  # the example
    assert "exits 0 when every worker did, 130 when stopped by a signal, else 1" in text
