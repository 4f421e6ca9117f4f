"""``hpo dashboard``: optuna-dashboard on the storage.

optuna-dashboard has no authentication, and its API changes the storage (``DELETE
/api/studies/<id>`` deletes a study, ``POST /api/trials/<id>/tell`` finishes a trial). So it
binds to 127.0.0.1 by default; another address needs ``--allow-remote``. Every request goes
through :class:`~hpo.cli.dashboard_guard.HostCheck` (421 for a Host that is not a loopback
name, the bound address or an ``--allowed-host``: DNS rebinding; 403 for a write from a
foreign Origin), and with ``--read-only`` through :class:`~hpo.cli.dashboard_guard.ReadOnly`
(403 for every method but GET, HEAD and OPTIONS), before it reaches the dashboard's app
(``optuna_dashboard.wsgi``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from pathlib import Path

import click

from hpo.cli.dashboard_guard import HostCheck, ReadOnly, WsgiApp, is_loopback, split_host
from hpo.cli.options import common_options, example, storage_url

__all__ = ["dashboard", "dashboard_app", "is_loopback", "serve"]

TUNNEL_HINT = "ssh -L 8080:127.0.0.1:8080 HOST"


def _allowed_hosts(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """``--allowed-host``'s values, each checked to be a host (a typo fails at start)."""
    for value in values:
        if split_host(value) is None:
            raise click.BadParameter(
                f"{value!r} is not a host: give a name or address with an optional port "
                "(dash.example.com, dash.example.com:443, [2001:db8::1])",
                param_hint="'--allowed-host'",
            )
    return values


@click.command(
    epilog=example(
        "hpo dashboard --storage sqlite:///hpo.db --port 8080",
        f"{TUNNEL_HINT}   # then open http://127.0.0.1:8080 on your machine",
    )
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="bind address; the dashboard has no authentication, so an address other than "
    "loopback needs --allow-remote",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="port")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="bind to an address other than loopback: anyone who reaches the port can read and "
    "delete studies (use an SSH tunnel or a proxy with authentication instead)",
)
@click.option(
    "--read-only",
    is_flag=True,
    help="refuse every request but GET/HEAD/OPTIONS (403): no study can be deleted or changed",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    metavar="NAME",
    multiple=True,
    callback=_allowed_hosts,
    help="also serve requests whose Host is NAME (repeatable; e.g. a reverse proxy's name); "
    "others than loopback names and the bound address get 421 (DNS rebinding)",
)
@common_options()
def dashboard(
    host: str,
    port: int,
    allow_remote: bool,
    read_only: bool,
    allowed_hosts: tuple[str, ...],
    storage: str | None,
    output_root: Path,
) -> None:
    """Serve optuna-dashboard on the storage.

    It has no authentication, and its API can delete studies: it binds to loopback unless
    --allow-remote is given. From another machine, reach it through an SSH tunnel
    (ssh -L 8080:127.0.0.1:8080 HOST) or a proxy with authentication (give the proxy's name
    with --allowed-host). A request whose Host header is not a loopback name (localhost,
    127.0.0.1, [::1]), the bound address or an --allowed-host gets 421, and a write from a page
    of another origin gets 403: a web page cannot drive it (DNS rebinding). The reports'
    figures are served from the artifact store: HPO_ARTIFACTS, else
    OUTPUT_ROOT/dashboard-artifacts.
    """
    if not is_loopback(host) and not allow_remote:
        raise click.BadParameter(
            f"{host!r} is not a loopback address: the dashboard has no authentication and "
            "anyone who reaches the port can delete studies; reach it through an SSH tunnel "
            f"({TUNNEL_HINT}) or give --allow-remote (with --read-only to refuse changes)",
            param_hint="'--host'",
        )
    app = dashboard_app(
        storage_url(storage),
        output_root,
        bound_host=host,
        read_only=read_only,
        allowed_hosts=allowed_hosts,
    )
    mode = "read-only" if read_only else "read-write"
    if is_loopback(host):
        click.echo(f"optuna-dashboard on http://{host}:{port} ({mode}, no authentication)")
    else:
        click.echo(
            f"optuna-dashboard on http://{host}:{port} ({mode}, no authentication): anyone who "
            "reaches this port can read" + ("" if read_only else " and delete") + " studies"
        )
    serve(host, port, app)


def dashboard_app(
    url: str,
    output_root: Path,
    *,
    bound_host: str,
    read_only: bool = False,
    allowed_hosts: Sequence[str] = (),
) -> WsgiApp:
    """optuna-dashboard's WSGI app on the storage ``url``, behind the Host check (and
    ``--read-only``): what ``hpo dashboard`` serves.

    Args:
        url: The SQL storage URL.
        output_root: Where the reports' figures are when no ``HPO_ARTIFACTS`` is set.
        bound_host: The address the server binds (accepted as a Host).
        read_only: Refuse every method but GET, HEAD and OPTIONS.
        allowed_hosts: More accepted Host names (``--allowed-host``).
    """
    from optuna_dashboard import wsgi

    from hpo.evaluation.notes import dashboard_store
    from hpo.study.creation import optuna_storage

    app: WsgiApp = wsgi(optuna_storage(url), artifact_store=dashboard_store(output_root))
    if read_only:
        app = ReadOnly(app)
    return HostCheck(app, bound_host=bound_host, allowed_hosts=allowed_hosts)


def serve(host: str, port: int, app: WsgiApp) -> None:
    """Serve ``app`` with the standard library's WSGI server (as ``optuna_dashboard.run_server``
    does) until Ctrl-C; IPv6 addresses too."""
    from wsgiref.simple_server import WSGIServer, make_server

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    with (
        make_server(host, port, app, server_class=Server) as server,
        contextlib.suppress(KeyboardInterrupt),
    ):
        server.serve_forever()
