"""The root command: exit codes, one-line errors, --verbose, and the console script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from hpo.cli import EXIT_BAD_INPUT, EXIT_FAILURE, main
from tests.hpo_tests.cli_tests.conftest import Hpo, one_line


def test_unknown_command_is_a_usage_error(hpo: Hpo) -> None:
    result = hpo("nosuchcommand")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "No such command 'nosuchcommand'" in result.stderr


def test_missing_required_option_names_it(hpo: Hpo) -> None:
    result = hpo("study", "status")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "--study" in result.stderr


def test_bad_input_from_the_library_is_exit_2_in_one_line(hpo: Hpo, tmp_path: Path) -> None:
    result = hpo("study", "best", "--study", "nosuch", "--storage", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == EXIT_BAD_INPUT
    assert one_line(result).startswith("hpo: error: no study named 'nosuch'")


def test_a_failure_that_is_not_bad_input_is_exit_1(hpo: Hpo, tmp_path: Path) -> None:
    """A port already taken is the machine's state, not the user's input: an OSError, which
    is not bad input by its class (no catch-all by base class any more)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"sqlite:///{tmp_path}/x.db"
        result = hpo("dashboard", "--port", str(port), "--storage", url)
    assert result.exit_code == EXIT_FAILURE
    last = result.stderr.strip().splitlines()[-1]  # after the web server's banner
    assert last.startswith("hpo: error:") and "already in use" in last
    assert "Traceback" not in result.stderr


def test_verbose_shows_the_traceback_and_keeps_the_exit_code(hpo: Hpo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    result = hpo("study", "trials", "--study", "nosuch", "--storage", url, "-v")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "Traceback" in result.stderr and "NotFoundError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("hpo: error: no study named")


def test_main_returns_the_exit_code(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert main(["--help"]) == 0
    assert "Usage: hpo" in capsys.readouterr().out
    code = main(["study", "best", "--study", "nosuch", "--storage", f"sqlite:///{tmp_path}/x.db"])
    assert code == EXIT_BAD_INPUT
    assert "no study named 'nosuch'" in capsys.readouterr().err


HELP_IMPORTS = """
import json, sys
from hpo.cli import cli, main
import click

def paths(command, path=()):
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from paths(sub, (*path, name))

codes = {" ".join(p): main([*p, "--help"]) for p in paths(cli)}
heavy = sorted(m for m in ("torch", "transformers", "peft", "sentence_transformers")
               if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_help_of_every_command_does_not_import_heavy_libraries(tmp_path: Path) -> None:
    """A fresh interpreter is the point: torch and friends load only when a command runs."""
    proc = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert set(report["codes"].values()) == {0}
    assert {"", "data import", "train", "evaluate", "db upgrade"} <= set(report["codes"])


def test_the_console_module_exits_with_the_code(tmp_path: Path) -> None:
    """``python -m hpo`` (what the launcher starts) passes the exit code to the shell."""
    env = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo",
            "study",
            "status",
            "--study",
            "x",
            "--storage",
            "mysql://h/db",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert proc.stderr.startswith("hpo: error:") and "mysql" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_sigusr1_writes_every_threads_stack_and_the_process_goes_on() -> None:
    """`kill -USR1 PID`: what a hung worker is doing, in its log, without a debugger."""
    script = (
        "import os, signal, threading, time\n"
        "from hpo.cli import main\n"
        "main(['--version'])\n"
        "beside = threading.Thread(target=time.sleep, args=(2,), name='beside')\n"
        "beside.start()\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
        "time.sleep(0.2)\n"
        "print('still running')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "still running" in done.stdout
    assert "Current thread" in done.stderr and done.stderr.count("Thread 0x") >= 1, done.stderr
