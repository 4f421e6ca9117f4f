"""``hpo dashboard``: optuna-dashboard on the storage.

optuna-dashboard has no authentication, and its API changes the storage (``DELETE
/api/studies/<id>`` deletes a study, ``POST /api/trials/<id>/tell`` finishes a trial). So it
binds to 127.0.0.1 by default; another address needs ``--allow-remote``, and ``--read-only``
answers every request but GET, HEAD and OPTIONS with 403 before it reaches the dashboard.
optuna-dashboard has no read-only mode of its own, hence the small WSGI middleware
(:class:`ReadOnly`) around its app (``optuna_dashboard.wsgi``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from hpo.cli.options import common_options, example, storage_url

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""What ``--read-only`` lets through: requests that read."""

TUNNEL_HINT = "ssh -L 8080:127.0.0.1:8080 HOST"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ReadOnly:
    """WSGI middleware: 403 for every method but GET, HEAD and OPTIONS."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Pass a read on to the app; refuse anything else."""
        if environ.get("REQUEST_METHOD", "GET").upper() in SAFE_METHODS:
            return self.app(environ, start_response)
        body = b"hpo dashboard --read-only: only GET, HEAD and OPTIONS are served\n"
        start_response(
            "403 Forbidden",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (127.0.0.0/8, ::1).

    ``0.0.0.0`` and ``::`` (every interface) are not; a name that does not resolve is not.
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


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
@common_options()
def dashboard(
    host: str,
    port: int,
    allow_remote: bool,
    read_only: bool,
    storage: str | None,
    output_root: Path,
) -> None:
    """Serve optuna-dashboard on the storage.

    It has no authentication, and its API can delete studies: it binds to loopback unless
    --allow-remote is given. From another machine, reach it through an SSH tunnel
    (ssh -L 8080:127.0.0.1:8080 HOST) or a proxy with authentication. The reports'
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
    from optuna_dashboard import wsgi

    from hpo.evaluation.notes import dashboard_store
    from hpo.study.creation import optuna_storage

    app: Any = wsgi(
        optuna_storage(storage_url(storage)), artifact_store=dashboard_store(output_root)
    )
    if read_only:
        app = ReadOnly(app)
    mode = "read-only" if read_only else "read-write"
    if is_loopback(host):
        click.echo(f"optuna-dashboard on http://{host}:{port} ({mode}, no authentication)")
    else:
        click.echo(
            f"optuna-dashboard on http://{host}:{port} ({mode}, no authentication): anyone who "
            "reaches this port can read" + ("" if read_only else " and delete") + " studies"
        )
    serve(host, port, app)


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
