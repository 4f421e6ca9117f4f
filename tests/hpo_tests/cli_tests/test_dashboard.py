"""``hpo dashboard``: a real server process on localhost."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna

from hpo.cli import EXIT_BAD_INPUT
from tests.hpo_tests.cli_tests.conftest import Hpo


def test_port_out_of_range_is_refused(hpo: Hpo) -> None:
    result = hpo("dashboard", "--port", "0")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "Invalid value for '--port'" in result.stderr


def test_dashboard_serves_the_study_on_localhost(tmp_path: Path) -> None:
    """A server that keeps running: here a real process is the point."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    optuna.create_study(study_name="shown", storage=url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo", "dashboard", "--storage", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        body = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies") as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert '"shown"' in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
