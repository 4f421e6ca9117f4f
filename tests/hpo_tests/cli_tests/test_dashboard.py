"""``hpo dashboard``: a real server process on localhost; off loopback only when asked, and
read-only when asked (optuna-dashboard has no authentication, and its API deletes studies)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
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


def _request(method: str, url: str, **headers: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, headers=headers)
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
    # The same request without --read-only does delete: the refusal above is the flag's; from
    # a foreign Host (DNS rebinding) it does not (test_dashboard_host.py has the cases).
    with _dashboard(tmp_path, url) as base:
        foreign = {"Host": f"rebind.example:{base.rpartition(':')[2]}"}
        assert _request("DELETE", f"{base}/api/studies/{study_id}", **foreign)[0] == 421
        assert optuna.study.get_all_study_names(url) == ["kept"]
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


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",  # let the dashboard's JavaScript fetch and render
    "--window-size=1400,1000",
)
"""The README's browser check: ``chromium <flags> --user-data-dir=$(mktemp -d)
--screenshot=x.png URL`` (``--dump-dom`` prints the rendered page instead)."""


@contextmanager
def _dashboard_at(url: str, output_root: Path) -> Iterator[str]:
    """``hpo dashboard`` on a free localhost port; yields its base URL once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hpo", "dashboard", "--storage", url),
            *("--port", str(port), "--output-root", str(output_root)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=output_root,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/api/studies").close()
                break
            except OSError:
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _chromium(page: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} to look at the dashboard"
)
def test_a_browser_sees_the_trial_note_the_study_note_and_the_figure(tmp_path: Path) -> None:
    """In a real browser (headless Chromium) against ``hpo dashboard``: the evaluated trial's
    page shows its note with the figures, the study's note page the summary, and the study
    page the report's PNG as an artifact; the screenshots are kept under tmp_path."""
    import storage
    from hpo.evaluation.notes import (
        dashboard_store,
        save_study_note,
        save_trial_note,
        trial_note_markdown,
        upload_figure,
    )
    from hpo.evaluation.records import DECISION_ATTR, promotion_line

    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study = optuna.create_study(study_name="shown", storage=url)
    study.optimize(lambda t: t.suggest_float("learning_rate", 1e-5, 1e-3, log=True), n_trials=2)
    figures = {"trial": 1, "similarity": 0.4321, "similarity_ci": [0.41, 0.45], "floor": 0.2}
    save_trial_note(study, 1, trial_note_markdown(figures, promoted=True))
    save_study_note(study, "# Study shown: comparison of methods\n\n**Decision:** none yet.\n")
    study.set_user_attr(DECISION_ATTR, promotion_line(1, 0.4321, 1))  # the evaluator's line
    png = tmp_path / "comprehensive_comparison.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")  # the listing is checked, not the picture
    engine = storage.open_storage(url)
    upload_figure(engine, study, png, "sha", dashboard_store(tmp_path))
    with _dashboard_at(url, tmp_path) as base:
        trial_page = f"{base}/dashboard/studies/1/trials?numbers=1"
        shown = _chromium(trial_page, "--dump-dom")
        assert "Trial 1: evaluation on the test examples" in shown
        assert "43.21%" in shown and "41.00% to 45.00%" in shown
        assert "Study shown: comparison of methods" in _chromium(
            f"{base}/dashboard/studies/1/note", "--dump-dom"
        )
        study_page = _chromium(f"{base}/dashboard/studies/1", "--dump-dom")
        assert "comprehensive_comparison.png" in study_page
        # the decision line, among the study's user attributes on its page
        assert "promoted trial 1: similarity 43.21%, best of 1 evaluated" in study_page
        _chromium(trial_page, f"--screenshot={tmp_path / 'trial.png'}")
    assert (tmp_path / "trial.png").stat().st_size > 10_000
