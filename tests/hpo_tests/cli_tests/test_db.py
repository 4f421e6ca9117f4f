"""``hpo db upgrade`` on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from hpo.cli import EXIT_BAD_INPUT
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line


def test_upgrade_creates_then_reports_the_revision(hpo: Hpo, storage_url: str) -> None:
    import storage

    result = hpo("db", "upgrade", "--storage", storage_url)
    assert result.exit_code == 0, result.output
    assert "upgraded from revision (no tables) to " in result.stdout
    head = result.stdout.strip().rsplit(" ", 1)[-1]
    again = hpo("db", "upgrade", "--storage", storage_url)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip().endswith(f"already at revision {head}")
    engine = storage.open_storage(storage_url)  # the schema this code expects is there
    with storage.session_scope(engine) as session:
        assert storage.list_evaluation_runs(session, "any") == []


def test_upgrade_names_a_bad_url(hpo: Hpo, tmp_path: Path) -> None:
    result = hpo("db", "upgrade", "--storage", "mysql://h/db")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "mysql" in one_line(result)
