"""Every command documents itself: help, an example, help on every option, a row in
docs/commands.md."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from hpo.cli import cli

COMMANDS = Path(__file__).resolve().parents[1] / "docs" / "commands.md"


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, (*path, name))


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


ALL = list(_walk(cli))
LEAVES = [p for p in ALL if not isinstance(_command(p), click.Group)]


def _id(path: tuple[str, ...]) -> str:
    return " ".join(path) or "hpo"


def test_the_tree_has_the_documented_commands() -> None:
    assert {
        "data generate",
        "data import",
        "data cluster",
        "train",
        "study create",
        "study status",
        "study best",
        "study trials",
        "worker",
        "launch",
        "dashboard",
        "evaluate",
        "demo",
        "db upgrade",
    } <= {" ".join(p) for p in LEAVES}


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    command = _command(path)
    assert command.help and command.help.strip(), f"`hpo {_id(path)}` has no help text"


@pytest.mark.parametrize("path", LEAVES, ids=_id)
def test_every_command_has_an_example_of_itself(path: tuple[str, ...]) -> None:
    epilog = _command(path).epilog or ""
    assert "Example:" in epilog, f"`hpo {_id(path)}` has no example"
    assert f"hpo {' '.join(path)}" in epilog.split("Example:", 1)[1]


@pytest.mark.parametrize("path", LEAVES, ids=_id)
def test_every_option_has_help(path: tuple[str, ...]) -> None:
    command = _command(path)
    bare = [
        p.opts[0]
        for p in command.params
        if isinstance(p, click.Option) and not (p.help and p.help.strip())
    ]
    assert not bare, f"`hpo {_id(path)}` options without help: {bare}"


@pytest.mark.parametrize("path", LEAVES, ids=_id)
def test_every_command_is_in_the_commands_table(path: tuple[str, ...]) -> None:
    text = COMMANDS.read_text(encoding="utf-8")
    row = rf"^\| `hpo {re.escape(' '.join(path))}` \|"
    assert re.search(row, text, re.MULTILINE), f"`hpo {_id(path)}` has no row in {COMMANDS}"
