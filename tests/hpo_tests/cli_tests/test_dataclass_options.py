"""Options derived from dataclass fields: types, defaults, help, nesting, names, errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
import pytest
from click.testing import CliRunner

from hpo.cli.dataclass_options import (
    build_dataclass,
    dataclass_options,
    field_docs,
    field_options,
)


@dataclass(frozen=True)
class Inner:
    """A nested group of settings."""

    limit: int | None = None
    """Cap on something (None: no cap)."""
    scale: float = 1.5
    """How much."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"invalid inner.limit={self.limit}: expected >= 1")


@dataclass(frozen=True)
class Outer:
    """Settings of a pretend command."""

    count: int = 3
    """How many ``things`` to make."""
    name: str = "x"
    """A name,
    on two lines."""
    out: Path = Path("out")
    """Where it goes."""
    mode: Literal["fast", "slow"] = "fast"
    """Speed."""
    verbose_output: bool = False
    """Say more."""
    tags: tuple[str, ...] = ()
    """Labels, repeatable."""
    inner: Inner = field(default_factory=Inner)
    """Nested settings."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"invalid count={self.count}: expected >= 1")


@dataclass
class Required:
    """A field without a default."""

    path: Path
    """Input file."""


def _run(decorator: Any, cls: type, *args: str) -> tuple[Any, click.testing.Result]:
    built: list[Any] = []

    @click.command()
    @decorator
    def command(**kwargs: Any) -> None:
        built.append(build_dataclass(cls, kwargs))
        assert not kwargs, kwargs  # build_dataclass took every option of cls

    result = CliRunner().invoke(command, list(args))
    return (built[0] if built else None), result


def test_field_docs_are_the_attribute_docstrings() -> None:
    docs = field_docs(Outer)
    assert docs["count"] == "How many things to make."
    assert docs["name"] == "A name, on two lines."
    assert "seed" not in docs  # no docstring, no help


def test_defaults_give_the_dataclass_defaults() -> None:
    built, result = _run(dataclass_options(Outer), Outer)
    assert result.exit_code == 0, result.output
    assert built == Outer()


def test_every_type_parses_into_the_field() -> None:
    built, result = _run(
        dataclass_options(Outer),
        Outer,
        *("--count", "7", "--name", "y", "--out", "a/b", "--mode", "slow"),
        *("--verbose-output", "--tags", "t1", "--tags", "t2", "--limit", "4", "--scale", "2"),
    )
    assert result.exit_code == 0, result.output
    assert built == Outer(
        count=7,
        name="y",
        out=Path("a/b"),
        mode="slow",
        verbose_output=True,
        tags=("t1", "t2"),
        inner=Inner(limit=4, scale=2.0),
    )
    assert isinstance(built.out, Path)


def test_help_shows_docstrings_and_defaults() -> None:
    _, result = _run(dataclass_options(Outer), Outer, "--help")
    text = " ".join(result.output.split())
    assert "--count INTEGER How many things to make. [default: 3]" in text
    assert "--mode [fast|slow]" in text
    assert "--verbose-output / --no-verbose-output" in text
    assert "--limit INTEGER Cap on something (None: no cap)." in text


def test_include_exclude_and_rename_by_dotted_path() -> None:
    options = field_options(
        Outer,
        include=("count", "inner"),
        exclude=("inner.scale",),
        rename={"count": ("--n-things", "-n"), "inner.limit": "--inner-limit"},
    )
    assert [(o.path, o.flags) for o in options] == [
        ("count", ("--n-things", "-n")),
        ("inner.limit", ("--inner-limit",)),
    ]
    decorator = dataclass_options(
        Outer, include=("count", "inner.limit"), rename={"count": ("--n-things", "-n")}
    )
    built, result = _run(decorator, Outer, "-n", "5", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert built == Outer(count=5, inner=Inner(limit=2))


def test_a_value_the_dataclass_refuses_names_the_flag() -> None:
    _, result = _run(dataclass_options(Outer, rename={"count": "--n"}), Outer, "--n", "0")
    assert result.exit_code == 2
    assert "Invalid value for '--n': invalid count=0: expected >= 1" in result.output
    _, result = _run(dataclass_options(Outer), Outer, "--limit", "0")
    assert result.exit_code == 2
    assert "Invalid value for '--limit'" in result.output


def test_a_required_field_is_a_required_option() -> None:
    _, result = _run(dataclass_options(Required), Required)
    assert result.exit_code == 2 and "Missing option '--path'" in result.output
    built, result = _run(dataclass_options(Required), Required, "--path", "f.txt")
    assert built == Required(Path("f.txt"))


def test_names_that_match_no_field_are_refused() -> None:
    with pytest.raises(ValueError, match=r"include names no field of Outer: \['cont'\]"):
        dataclass_options(Outer, include=("cont",))
    with pytest.raises(ValueError, match="rename names no field"):
        dataclass_options(Outer, rename={"inner.limt": "--x"})
    with pytest.raises(ValueError, match="both want --count"):
        dataclass_options(Outer, rename={"seed": "--count"})


def test_a_type_without_a_command_line_form_is_refused() -> None:
    @dataclass
    class Odd:
        mapping: dict[str, int] = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match=r"Odd\.mapping: no command-line type"):
        dataclass_options(Odd)
