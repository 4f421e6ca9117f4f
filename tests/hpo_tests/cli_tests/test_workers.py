"""``hpo worker`` and ``hpo launch``: what they refuse before any trial or process starts."""

from __future__ import annotations

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
    ],
)
def test_counts_and_lists_are_checked_naming_the_flag(
    hpo: Hpo, args: tuple[str, ...], flag: str
) -> None:
    result = hpo(*args)
    assert result.exit_code == EXIT_BAD_INPUT
    assert f"Invalid value for '{flag}'" in result.stderr


@pytest.mark.parametrize("args", [(), ("--workers", "2", "--gpus", "0,1")])
def test_launch_wants_workers_or_gpus(hpo: Hpo, args: tuple[str, ...]) -> None:
    result = hpo("launch", "--study", "s", *args)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "give either --workers N or --gpus IDS" in result.stderr


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
