"""``hpo db upgrade`` on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.cli import EXIT_BAD_INPUT
from tests.conftest import store_dataset_with_one_cluster
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


@pytest.mark.postgres
def test_every_command_on_an_older_schema_names_the_upgrade(
    hpo: Hpo, pg_url: str, tmp_path: Path
) -> None:
    """A database our code has moved past (a table or a column of ours missing): each command
    that reads it without creating the schema exits with the workers' upgrade hint on one
    line, not the driver's `relation "study_records" does not exist`."""
    import sqlalchemy as sa
    from alembic import command

    import storage
    from hpo.study.config import StudyConfig, StudySection
    from hpo.study.creation import create_study
    from storage.migrations import alembic_config

    store_dataset_with_one_cluster(pg_url, "small")
    create_study(
        StudyConfig(study=StudySection(name="old", dataset="small", k=1, cluster_id=0)), pg_url
    )
    engine = sa.create_engine(pg_url)

    def downgrade(revision: str) -> None:
        with engine.begin() as conn:
            command.downgrade(alembic_config(connection=conn), revision)

    head = storage.head_revision()
    commands = {
        "status": ("study", "status", "--study", "old"),
        "list": ("study", "list"),
        "budget": ("study", "budget", "--study", "old", "--n-trials", "20"),
        "report": ("report", "--study", "old"),
    }
    try:
        downgrade("0004")  # a table of ours missing: study_records
        for name, args in commands.items():
            result = hpo(*args, "--storage", pg_url, "--output-root", tmp_path)
            line = one_line(result)
            assert result.exit_code == 1, (name, line)
            assert line.startswith("hpo: error: the database at postgresql+psycopg://"), line
            assert (
                f"revision 0004, older than this code's {head}: stop the workers and run "
                "`hpo db upgrade --storage URL`" in line
            ), (name, line)
            assert 'relation "study_records" does not exist' in line, (name, line)
    finally:
        engine.dispose()
    assert hpo("db", "upgrade", "--storage", pg_url).exit_code == 0
    result = hpo(*commands["list"], "--storage", pg_url)  # the hint's step was the fix
    assert result.exit_code == 0, result.output
