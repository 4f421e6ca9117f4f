"""``hpo dashboard``: a real server process on localhost; off loopback only when asked, and
read-only when asked (optuna-dashboard has no authentication, and its API deletes studies)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest

from hpo.cli import EXIT_BAD_INPUT
from hpo.cli.dashboard import is_loopback
from tests.hpo_tests.cli_tests.conftest import Hpo

REQUEST_TIMEOUT = 10
"""Seconds one HTTP request to the test server may take."""


def test_port_out_of_range_is_refused(hpo: Hpo) -> None:
    result = hpo("dashboard", "--port", "0")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "Invalid value for '--port'" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _dashboard(tmp_path: Path, url: str, *args: str) -> Iterator[str]:
    """A real `hpo dashboard` on 127.0.0.1; yields its base URL once it answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo", "dashboard", "--storage", url, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/meta", timeout=REQUEST_TIMEOUT).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]
                assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _request(method: str, url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_dashboard_serves_the_study_on_localhost(tmp_path: Path) -> None:
    """A server that keeps running: here a real process is the point."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    optuna.create_study(study_name="shown", storage=url)
    with _dashboard(tmp_path, url) as base:
        status, body = _request("GET", f"{base}/api/studies")
    assert status == 200 and '"shown"' in body


def test_read_only_refuses_a_delete_and_serves_reads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study_id = optuna.create_study(study_name="kept", storage=url)._study_id
    with _dashboard(tmp_path, url, "--read-only") as base:
        status, body = _request("GET", f"{base}/api/studies")
        assert status == 200 and '"kept"' in body
        status, body = _request("DELETE", f"{base}/api/studies/{study_id}")
        assert status == 403 and "read-only" in body
        assert _request("POST", f"{base}/api/studies")[0] == 403
    assert optuna.study.get_all_study_names(url) == ["kept"]
    # The same request without --read-only does delete: the refusal above is the flag's.
    with _dashboard(tmp_path, url) as base:
        assert _request("DELETE", f"{base}/api/studies/{study_id}")[0] == 204
    assert optuna.study.get_all_study_names(url) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_host_off_loopback_needs_allow_remote(tmp_path: Path, host: str) -> None:
    """Refused before anything binds: the command exits at once (a server would not)."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    command = [sys.executable, "-m", "hpo", "dashboard", "--storage", url, "--host", host]
    try:
        result = subprocess.run(
            [*command, "--port", str(_free_port())], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`hpo dashboard --host {host}` started serving without --allow-remote")
    assert result.returncode == EXIT_BAD_INPUT
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"hpo: error: Invalid value for '--host': {host!r} is not a loopback")
    assert "can delete studies" in line and "--allow-remote" in line
    assert "ssh -L 8080:127.0.0.1:8080" in line


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.1", False),
        ("no-such-host.invalid", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
