"""Options derived from dataclass fields: types, defaults, help, nesting, names, errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
import pytest
from click.testing import CliRunner

from evaluators.config import EvalConfig
from hpo.cli.dataclass_options import (
    build_dataclass,
    dataclass_options,
    explicit_values,
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


# --- explicit_values: only the flags given, to replace fields of a base loaded later -------


def _explicit(cls: type, *args: str) -> tuple[Any, Any]:
    found: list[dict[str, Any]] = []

    @click.command()
    @dataclass_options(cls, base="[evaluation]")
    def command(**kwargs: Any) -> None:
        found.append(explicit_values(cls, kwargs))
        assert not kwargs, kwargs  # every option of cls taken

    result = CliRunner().invoke(command, list(args))
    return (found[0] if found else None), result


def test_only_the_flags_given_are_overrides() -> None:
    assert _explicit(EvalConfig)[0] == {}
    given, _ = _explicit(EvalConfig, "--min-effect", "1", "--batch-size", "32", "--no-do-sample")
    # a flag given at its default value is given all the same: it replaces the base's field
    assert given == {"min_effect": 1.0, "batch_size": 32, "do_sample": False}
    given, _ = _explicit(Outer, "--limit", "3", "--tags", "a")
    assert given == {"inner.limit": 3, "tags": ("a",)}


def test_a_value_refused_whatever_the_base_is_refused_at_once() -> None:
    _, result = _explicit(EvalConfig, "--min-effect", "-1")
    assert result.exit_code == 2
    assert "Invalid value for '--min-effect': invalid min_effect=-1.0" in result.output
    _, result = _explicit(EvalConfig, "--temperature", "0.7", "--no-do-sample")
    assert result.exit_code == 2
    assert "Invalid value for '--temperature' / '--do-sample'" in result.output


def test_a_value_that_depends_on_a_field_left_alone_is_left_to_the_base() -> None:
    """Greedy by default, but the study may sample: ``--temperature`` alone is the study's
    to judge (:func:`hpo.study.config.study_eval_config`)."""
    given, result = _explicit(EvalConfig, "--temperature", "0.7")
    assert result.exit_code == 0, result.output
    assert given == {"temperature": 0.7}


def test_help_names_the_base_beside_each_default() -> None:
    _, result = _explicit(EvalConfig, "--help")
    text = " ".join(result.output.split())
    assert "[default: ([evaluation] or 2.0)]" in text
    assert "[default: ([evaluation] or --stop-at-newline)]" in text
    assert "[default: ([evaluation] or none)]" in text
