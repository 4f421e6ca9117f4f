"""``hpo dashboard`` refuses what a web page could send it: a foreign Host (DNS rebinding) gets
421 and a write from a foreign Origin 403, in read-write and read-only modes, and neither
changes a study. In process: the app ``hpo dashboard`` serves (``dashboard_app``) called with
crafted WSGI environs on a real Optuna storage; ``test_dashboard.py`` drives the real server."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from hpo.cli import EXIT_BAD_INPUT
from hpo.cli.dashboard import dashboard_app
from hpo.cli.dashboard_guard import split_host
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line

Call = Callable[..., tuple[int, str]]


def _client(app: Any) -> Call:
    def call(
        method: str, path: str, host: str | None, *, origin: str | None = None, body: Any = None
    ) -> tuple[int, str]:
        data = b"" if body is None else json.dumps(body).encode()
        environ: dict[str, Any] = {}
        setup_testing_defaults(environ)
        environ.update(
            REQUEST_METHOD=method,
            PATH_INFO=path,
            CONTENT_TYPE="application/json",
            CONTENT_LENGTH=str(len(data)),
        )
        environ["wsgi.input"] = io.BytesIO(data)
        environ.pop("HTTP_HOST")  # setup_testing_defaults gives one: no header unless named
        if host is not None:
            environ["HTTP_HOST"] = host
        if origin is not None:
            environ["HTTP_ORIGIN"] = origin
        status: list[str] = []
        out = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        return int(status[0].split()[0]), out.decode()

    return call


@pytest.fixture
def studies(tmp_path: Path) -> tuple[str, int, int]:
    """A storage with two studies: (url, id of "kept", id of "named")."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    kept = optuna.create_study(study_name="kept", storage=url)._study_id
    named = optuna.create_study(study_name="named", storage=url)._study_id
    return url, kept, named


def _app(url: str, tmp_path: Path, **options: Any) -> Call:
    options.setdefault("bound_host", "127.0.0.1")
    return _client(dashboard_app(url, tmp_path, **options))


@pytest.mark.parametrize("read_only", [False, True])
def test_a_foreign_host_gets_421_and_changes_nothing(
    tmp_path: Path, studies: tuple[str, int, int], read_only: bool
) -> None:
    """The DNS rebinding of the issue: ``Host: rebind.example:<port>`` deleted a study and
    renamed another; under --read-only it read every study."""
    url, kept, named = studies
    call = _app(url, tmp_path, read_only=read_only)
    for host in ("rebind.example:8080", "rebind.example", "localhost.rebind.example:8080", None):
        status, body = call("GET", "/api/studies", host)
        assert status == 421, (host, body)
        assert "kept" not in body and "DNS rebinding" in body
        assert call("DELETE", f"/api/studies/{kept}", host)[0] == 421
        rename = {"study_name": "renamed"}
        assert call("POST", f"/api/studies/{named}/rename", host, body=rename)[0] == 421
    assert sorted(optuna.study.get_all_study_names(url)) == ["kept", "named"]


def test_loopback_names_on_any_port_are_served(
    tmp_path: Path, studies: tuple[str, int, int]
) -> None:
    """Loopback names, with the dashboard's port or a tunnel's (``ssh -L 9000:...``)."""
    url, kept, _ = studies
    call = _app(url, tmp_path)
    for host in ("127.0.0.1:8080", "localhost:9000", "LOCALHOST.", "[::1]:8080", "127.0.0.2"):
        status, body = call("GET", "/api/studies", host)
        assert status == 200 and '"kept"' in body, host
    # A write with no Origin (curl, a script) or this dashboard's own: served.
    assert (
        call("DELETE", f"/api/studies/{kept}", "localhost:8080", origin="http://localhost:9000")[0]
        == 204
    )
    assert optuna.study.get_all_study_names(url) == ["named"]


def test_allowed_host_and_the_bound_address_are_served(
    tmp_path: Path, studies: tuple[str, int, int]
) -> None:
    url, _, _ = studies
    call = _app(
        url,
        tmp_path,
        bound_host="192.0.2.7",
        allowed_hosts=("dash.example.com", "proxy.example:443"),
    )
    for host in ("dash.example.com", "Dash.Example.Com:8443", "proxy.example:443", "192.0.2.7:80"):
        assert call("GET", "/api/studies", host)[0] == 200, host
    for host in ("proxy.example:8080", "proxy.example", "other.example.com", "192.0.2.8:8080"):
        assert call("GET", "/api/studies", host)[0] == 421, host
    # Bound to every interface: "0.0.0.0" is no name a client sends, so it is not accepted.
    every = _app(url, tmp_path, bound_host="0.0.0.0")
    assert every("GET", "/api/studies", "0.0.0.0:8080")[0] == 421
    assert every("GET", "/api/studies", "127.0.0.1:8080")[0] == 200


@pytest.mark.parametrize("read_only", [False, True])
def test_a_write_from_a_foreign_origin_gets_403(
    tmp_path: Path, studies: tuple[str, int, int], read_only: bool
) -> None:
    """A page elsewhere posting to http://127.0.0.1:<port> (right Host, no CORS preflight)."""
    url, kept, named = studies
    call = _app(url, tmp_path, read_only=read_only, allowed_hosts=("dash.example.com",))
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example:8080", "file://"):
        status, body = call("DELETE", f"/api/studies/{kept}", "127.0.0.1:8080", origin=origin)
        assert status == 403, (origin, body)
        rename = {"study_name": "renamed"}
        status, _ = call(
            "POST", f"/api/studies/{named}/rename", "127.0.0.1:8080", origin=origin, body=rename
        )
        assert status == 403
        # A read from anywhere is answered (a browser keeps the answer from the foreign page).
        assert call("GET", "/api/studies", "127.0.0.1:8080", origin=origin)[0] == 200
    assert sorted(optuna.study.get_all_study_names(url)) == ["kept", "named"]
    # The allowed origin (the proxy's name) reaches the app: the refusals above are the check's.
    status, _ = call(
        "DELETE", f"/api/studies/{kept}", "dash.example.com", origin="https://dash.example.com"
    )
    assert status == (403 if read_only else 204)
    assert len(optuna.study.get_all_study_names(url)) == (2 if read_only else 1)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("localhost:8080", ("localhost", 8080)),
        ("Example.COM.", ("example.com", None)),
        ("[::1]:80", ("::1", 80)),
        ("[0:0::1]", ("::1", None)),
        ("127.0.0.1", ("127.0.0.1", None)),
        ("evil.example:99999", None),
        ("user@evil.example", None),
        ("[not-v6]:80", None),
        ("a b", None),
        ("", None),
    ],
)
def test_split_host(value: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_host(value) == parsed


def test_a_bad_allowed_host_is_refused_at_start(hpo: Hpo) -> None:
    result = hpo("dashboard", "--allowed-host", "https://dash.example.com/")
    assert result.exit_code == EXIT_BAD_INPUT
    line = one_line(result)
    assert "--allowed-host" in line and "'https://dash.example.com/' is not a host" in line
