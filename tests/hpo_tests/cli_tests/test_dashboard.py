"""``hpo dashboard``: a real server process on localhost."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest

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
def _dashboard(url: str, output_root: Path) -> Iterator[str]:
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

    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study = optuna.create_study(study_name="shown", storage=url)
    study.optimize(lambda t: t.suggest_float("learning_rate", 1e-5, 1e-3, log=True), n_trials=2)
    figures = {"trial": 1, "similarity": 0.4321, "similarity_ci": [0.41, 0.45], "floor": 0.2}
    save_trial_note(study, 1, trial_note_markdown(figures, promoted=True))
    save_study_note(study, "# Study shown: comparison of methods\n\n**Decision:** none yet.\n")
    png = tmp_path / "comprehensive_comparison.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")  # the listing is checked, not the picture
    engine = storage.open_storage(url)
    upload_figure(engine, study, png, "sha", dashboard_store(tmp_path))
    with _dashboard(url, tmp_path) as base:
        trial_page = f"{base}/dashboard/studies/1/trials?numbers=1"
        shown = _chromium(trial_page, "--dump-dom")
        assert "Trial 1: evaluation on the test examples" in shown
        assert "43.21%" in shown and "41.00% to 45.00%" in shown
        assert "Study shown: comparison of methods" in _chromium(
            f"{base}/dashboard/studies/1/note", "--dump-dom"
        )
        assert "comprehensive_comparison.png" in _chromium(
            f"{base}/dashboard/studies/1", "--dump-dom"
        )
        _chromium(trial_page, f"--screenshot={tmp_path / 'trial.png'}")
    assert (tmp_path / "trial.png").stat().st_size > 10_000
