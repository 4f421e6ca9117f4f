"""WSGI middleware around optuna-dashboard's app: the Host check and ``--read-only``.

optuna-dashboard has no authentication, and its API changes the storage (``DELETE
/api/studies/<id>`` deletes a study, ``POST /api/studies/<id>/rename`` renames one). Binding to
127.0.0.1 keeps other machines out, but not a web page in the user's own browser:

- **DNS rebinding**: a page on ``rebind.example`` whose name is then pointed at 127.0.0.1 is
  same-origin with the dashboard, so it can read every study and call the API. Its requests
  carry ``Host: rebind.example:<port>``, so :class:`HostCheck` answers every request whose Host
  is not a loopback name, the bound address or an ``--allowed-host`` with 421 before it reaches
  the dashboard (the rule of Django's ``ALLOWED_HOSTS`` and Jupyter's ``allow_remote_access``).
- **Cross-site writes**: a page elsewhere can send a form POST to ``http://127.0.0.1:<port>``
  (right Host, no CORS preflight). Browsers name the page in ``Origin``, so a write (any method
  but GET, HEAD, OPTIONS) whose Origin is present and not an allowed origin gets 403.

Ports are not compared: an SSH tunnel (``ssh -L 9000:127.0.0.1:8080``) or a proxy shows the
dashboard under another port, and a page cannot rebind a name to a port, only to an address.

optuna-dashboard has no read-only mode of its own either, hence :class:`ReadOnly`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "LOOPBACK_NAMES",
    "SAFE_METHODS",
    "HostCheck",
    "ReadOnly",
    "WsgiApp",
    "is_loopback",
    "split_host",
]

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Requests that read: what ``--read-only`` lets through, and what needs no Origin check."""

LOOPBACK_NAMES = frozenset({"localhost"})
"""Names that are loopback wherever the browser runs; loopback address literals (127.0.0.1,
[::1], all of 127.0.0.0/8) are accepted too."""

_HOST = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>\d{1,5}))?$"
)
"""A Host header value: ``name[:port]``, ``address[:port]`` or ``[v6 address][:port]``."""


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a Host header value, the host lower-cased without a trailing dot
    and an IPv6 address without brackets; None if ``value`` is not a host."""
    match = _HOST.match(value.strip())
    if match is None:
        return None
    host = match["v6"] or match["name"].lower().rstrip(".")
    if match["v6"]:
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    port = int(match["port"]) if match["port"] else None
    if not host or (port is not None and not 0 < port < 65536):
        return None
    return host, port


def _is_loopback_literal(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def _refuse(start_response: Callable[..., Any], status: str, message: str) -> list[bytes]:
    body = f"hpo dashboard: {message}\n".encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


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
        return _refuse(
            start_response, "403 Forbidden", "--read-only: only GET, HEAD and OPTIONS are served"
        )


class HostCheck:
    """WSGI middleware: 421 for a Host that is not this dashboard's, 403 for a write from a
    foreign Origin (see the module's docstring for why).

    Args:
        app: The dashboard's WSGI app.
        bound_host: The address the server binds (``--host``); accepted as a Host unless it
            is every interface (``0.0.0.0``, ``::``), which no client names.
        allowed_hosts: More names (``--allowed-host``), for a proxy in front; one with a
            port accepts that port only.
    """

    def __init__(self, app: WsgiApp, *, bound_host: str, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed: set[tuple[str, int | None]] = set()
        for value in allowed_hosts:
            parsed = split_host(value)
            if parsed is None:
                raise ValueError(
                    f"--allowed-host {value!r}: expected a host name or address, with an "
                    "optional port (dash.example.com, dash.example.com:443, [2001:db8::1])"
                )
            self.allowed.add(parsed)
        bound = split_host(f"[{bound_host}]" if ":" in bound_host else bound_host)
        if bound is not None and bound[0] not in {"0.0.0.0", "::"}:
            self.allowed.add((bound[0], None))

    def allows(self, value: str) -> bool:
        """Whether a Host header value (or an Origin's ``host[:port]``) names this dashboard."""
        parsed = split_host(value)
        if parsed is None:
            return False
        host, port = parsed
        if host in LOOPBACK_NAMES or _is_loopback_literal(host):
            return True
        return (host, None) in self.allowed or (host, port) in self.allowed

    def allows_origin(self, origin: str) -> bool:
        """Whether an Origin header value is a page of this dashboard (``http(s)://host``)."""
        parts = urllib.parse.urlsplit(origin.strip())
        if parts.scheme not in {"http", "https"} or parts.path not in {"", "/"}:
            return False
        return self.allows(parts.netloc)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Pass the request on if its Host (and, for a write, its Origin) is allowed."""
        host = environ.get("HTTP_HOST")
        if host is None or not self.allows(host):
            return _refuse(
                start_response,
                "421 Misdirected Request",
                f"Host {host!r} is not this dashboard's (a loopback name, the bound address, or "
                "one given with --allowed-host); refused against DNS rebinding",
            )
        method = environ.get("REQUEST_METHOD", "GET").upper()
        origin = environ.get("HTTP_ORIGIN")
        if method not in SAFE_METHODS and origin is not None and not self.allows_origin(origin):
            return _refuse(
                start_response,
                "403 Forbidden",
                f"a {method} from Origin {origin!r}: only pages of this dashboard may change "
                "studies (a loopback name, the bound address, or one given with --allowed-host)",
            )
        return self.app(environ, start_response)
