"""``hpo evaluator`` and ``hpo evaluate``: the flags and one-line refusals (the service's runs
are tested in tests/hpo_tests/test_evaluator.py)."""

from __future__ import annotations

from pathlib import Path

from hpo.cli import EXIT_BAD_INPUT
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line


def test_evaluator_help_names_watch_once_top_trials_and_lease(hpo: Hpo) -> None:
    text = " ".join(hpo("evaluator", "--help").stdout.split())
    for flag in ("--watch / --once", "--top-trials K", "--lease-ttl", "--poll-interval"):
        assert flag in text
    assert "[default: 3; x>=1]" in text  # K=3 by default
    assert "--top-k" in text  # the sampling flag of EvalConfig keeps its name


def test_evaluator_on_an_unknown_study_is_bad_input(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hpo.db"
    result = hpo("evaluator", "--study", "nope", "--once", "--storage", url)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "no study named 'nope'" in one_line(result)


def test_evaluate_takes_a_trial_or_an_adapter_not_both(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hpo.db"
    both = ("--trial", "1", "--adapter", str(tmp_path))
    result = hpo("evaluate", "--study", "s", *both, "--storage", url)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "give --trial or --adapter, not both" in result.stderr
    assert not (tmp_path / "hpo.db").exists()


def test_evaluate_refuses_an_adapter_that_is_not_a_folder(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hpo.db"
    result = hpo("evaluate", "--study", "s", "--adapter", tmp_path / "gone", "--storage", url)
    assert result.exit_code == EXIT_BAD_INPUT
    assert "gone' is not a directory" in one_line(result)
