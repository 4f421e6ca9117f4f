"""``hpo dashboard``: optuna-dashboard on the storage."""

from __future__ import annotations

from pathlib import Path

import click

from hpo.cli.options import common_options, example, storage_url


@click.command(epilog=example("hpo dashboard --storage sqlite:///hpo.db --port 8080"))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="bind address; the dashboard has no authentication, so keep it local or behind a "
    "proxy that has one",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="port")
@common_options()
def dashboard(host: str, port: int, storage: str | None, output_root: Path) -> None:
    """Serve optuna-dashboard on the storage.

    The reports' figures are served from the artifact store: HPO_ARTIFACTS, else
    OUTPUT_ROOT/dashboard-artifacts.
    """
    from optuna_dashboard import run_server

    from hpo.evaluation.notes import dashboard_store
    from hpo.study.creation import optuna_storage

    click.echo(
        f"optuna-dashboard on http://{host}:{port} (no authentication: keep it on "
        "127.0.0.1 or behind a proxy that has one)"
    )
    run_server(
        optuna_storage(storage_url(storage)),
        host=host,
        port=port,
        artifact_store=dashboard_store(output_root),
    )
