"""The ``hpo`` command line run in-process with click's CliRunner, in a temporary directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hpo.cli import cli

Hpo = Callable[..., Result]


@pytest.fixture
def hpo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hpo]:
    """Run ``hpo ARGS...`` in-process from ``tmp_path``; returns click's Result (exit_code,
    stdout, stderr). Database engines opened by the commands are closed afterwards."""
    import storage

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    monkeypatch.delenv("HPO_OUTPUT_ROOT", raising=False)
    runner = CliRunner()

    def invoke(*args: str | Path) -> Result:
        return runner.invoke(cli, [str(a) for a in args], prog_name="hpo")

    yield invoke
    storage.dispose_engines()


def one_line(result: Result) -> str:
    """The single stderr line of a failed command (fails if there are more)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]
