"""``hpo db``: the schema of our tables."""

from __future__ import annotations

from pathlib import Path

import click

from hpo.cli.options import common_options, example, storage_url


@click.group()
def db() -> None:
    """Manage the schema of our tables (Optuna keeps its own)."""


@db.command(epilog=example("hpo db upgrade --storage postgresql+psycopg://hpo@db/hpo"))
@common_options()
def upgrade(storage: str | None, output_root: Path) -> None:
    """Upgrade our tables to this version's schema, keeping their rows; safe to repeat."""
    import storage as storage_package

    url = storage_url(storage)
    before, after = storage_package.upgrade_database(url)
    where = storage_package.masked_url(url)
    if before == after:
        click.echo(f"{where}: already at revision {after}")
    else:
        click.echo(f"{where}: upgraded from revision {before or '(no tables)'} to {after}")
