"""A password in the storage URL, as ``user:pw@`` or as ``?password=``, never shows: not on a
worker's command line (``ps``), not in an error line, not in ``hpo study list``, not in the
report we write. The real PostgreSQL accepts any password here (trust authentication), so
every URL below works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner, Result

import storage
from hpo.cli import EXIT_BAD_INPUT, EXIT_FAILURE, cli
from hpo.study import load_study
from tests.hpo_tests.test_workers import long_study_config, prepare
from trainers.config import ModelConfig
from trainers.tiny import ensure_tiny_model

SECRET = "S3cret-Pw"
SSL_SECRET = "Ssl-S3cret"


def with_password(pg_url: str, form: str) -> str:
    """``pg_url`` with a password in the user info or in the query."""
    if form == "userinfo":
        scheme, rest = pg_url.split("://", 1)
        user, host = rest.split("@", 1)
        return f"{scheme}://{user}:{SECRET}@{host}"
    return f"{pg_url}?password={SECRET}&sslpassword={SSL_SECRET}"


FORMS = ["userinfo", "query"]


def assert_no_secret(text: str) -> None:
    assert SECRET not in text
    assert SSL_SECRET not in text


def _hpo(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(
        cli, [str(a) for a in args], prog_name="hpo", env={"COLUMNS": "400", **(env or {})}
    )
    storage.dispose_engines()
    return result


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://u:pw@h/db", "postgresql+psycopg://u:***@h/db"),
        ("postgresql+psycopg://u@h/db?password=pw", "postgresql+psycopg://u@h/db?password=***"),
        (
            "postgresql://h/db?PASSWORD=pw&sslpassword=pw&application_name=a",
            "postgresql://h/db?PASSWORD=***&application_name=a&sslpassword=***",
        ),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("not a url?password=pw", "<unparsable URL>"),
    ],
)
def test_masked_url_hides_every_password(url: str, shown: str) -> None:
    assert storage.masked_url(url) == shown


def _wait_for_a_trial(url: str, name: str, launcher: subprocess.Popen[bytes]) -> None:
    """Wait until the worker has asked for a trial: it reached the study through the URL
    in its environment."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and launcher.poll() is None:
        study, _ = load_study(url, name)
        if any(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials()):
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker asked for no trial of {name}")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _stop_launcher(launcher: subprocess.Popen[bytes], logs: Path) -> bytes:
    """SIGTERM to the launcher and its output; if it is still there after 120 s (seen once
    under load, not reproduced), its workers write their stacks to their logs (SIGUSR1)
    and the test fails with them."""
    launcher.send_signal(signal.SIGTERM)
    try:
        return launcher.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        workers = _children(launcher.pid)
        for pid in workers:
            os.kill(pid, signal.SIGUSR1)
        time.sleep(3)
        for pid in [*workers, launcher.pid]:
            os.kill(pid, signal.SIGKILL)
        launcher.wait()
        texts = [p.read_text()[-6000:] for p in logs.glob("*.log")] if logs.is_dir() else []
        raise AssertionError(
            "hpo launch still running 120 s after SIGTERM; its workers' logs, their stacks "
            "last:\n" + "\n".join(texts)
        ) from None


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("form", FORMS)
def test_launched_worker_command_line_has_no_password(
    pg_url: str, tmp_path: Path, form: str
) -> None:
    """`hpo launch` with the password only in HPO_STORAGE: the worker's /proc/PID/cmdline
    has none, and the worker still reaches the study (its trial starts training)."""
    url = with_password(pg_url, form)
    prepare(url, tmp_path, long_study_config(name="secret", n_trials=2))
    storage.dispose_engines()
    ensure_tiny_model(ModelConfig())  # built here, not by the worker while the test waits
    env = {**os.environ, "HPO_STORAGE": url}
    root = ("--output-root", str(tmp_path))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "hpo", "launch", "--study", "secret", "--workers", "1", *root],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while not workers and time.monotonic() < deadline and launcher.poll() is None:
            workers = _children(launcher.pid)
            time.sleep(0.01)
        assert workers, "hpo launch started no worker"
        command = _cmdline(workers[0])
        assert " worker " in command
        assert_no_secret(command)
        assert "--storage" not in command
        _wait_for_a_trial(url, "secret", launcher)
    finally:
        output = _stop_launcher(launcher, tmp_path / "logs")
    assert_no_secret(output.decode())
    for log in (tmp_path / "logs").iterdir():
        assert_no_secret(log.read_text())


@pytest.mark.postgres
@pytest.mark.parametrize("form", FORMS)
def test_error_lines_and_study_list_hide_the_password(
    pg_url: str, tmp_path: Path, form: str
) -> None:
    url = with_password(pg_url, form)
    listed = _hpo("study", "list", "--storage", url)
    assert listed.exit_code == 0, listed.output
    assert "***" in listed.stdout
    assert_no_secret(listed.output)

    storage.open_storage(url)
    prepare(url, tmp_path, long_study_config(name="listed", n_trials=1))
    storage.dispose_engines()
    listed = _hpo("study", "list", env={"HPO_STORAGE": url})
    assert listed.exit_code == 0, listed.output
    assert "listed" in listed.stdout and "***" in listed.stdout
    assert_no_secret(listed.output)

    missing = _hpo("study", "status", "--study", "nosuch", "--storage", url)
    assert missing.exit_code == EXIT_BAD_INPUT
    assert "no study named 'nosuch'" in missing.stderr and "***" in missing.stderr
    assert_no_secret(missing.output)

    unreachable = url.replace("127.0.0.1:5432", "127.0.0.1:1")
    down = _hpo("study", "status", "--study", "x", env={"HPO_STORAGE": unreachable})
    assert down.exit_code == EXIT_FAILURE
    assert "cannot reach the database" in down.stderr and "***" in down.stderr
    assert_no_secret(down.output)


@pytest.mark.postgres
@pytest.mark.parametrize("form", FORMS)
def test_written_report_hides_the_password(pg_url: str, tmp_path: Path, form: str) -> None:
    url = with_password(pg_url, form)
    prepare(url, tmp_path, long_study_config(name="reported", n_trials=1))
    storage.dispose_engines()
    root = tmp_path / "out"
    result = _hpo(
        "report", "--study", "reported", "--no-png", "--storage", url, "--output-root", root
    )
    assert result.exit_code == 0, result.output
    assert_no_secret(result.output)
    written = list((root / "results").rglob("*"))
    assert root / "results" / "reported" / "comparison" / "comprehensive_comparison.json" in written
    report = json.loads(
        (root / "results/reported/comparison/comprehensive_comparison.json").read_text()
    )
    assert "***" in report["storage"]
    for path in written:
        if path.is_file():
            assert_no_secret(path.read_text(errors="replace"))
