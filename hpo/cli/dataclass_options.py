"""Command-line options derived from a config dataclass, as litgpt derives its CLI from its
config dataclasses: one option per field, its type from the annotation, its default from the
field's default and its help from the field's attribute docstring. A default or a help text
then lives only in the dataclass, and a new field is a new flag without a CLI edit.

    @click.command()
    @dataclass_options(TrainConfig, rename={"learning_rate": ("--learning-rate", "--lr")})
    def train(**kwargs):
        config = build_dataclass(TrainConfig, kwargs)

A nested dataclass field (``TrainConfig.data``) contributes its own fields; ``include``,
``exclude`` and ``rename`` name them by their dotted path (``"data.max_train_per_persona"``),
the command line by the leaf name (``--max-train-per-persona``).

The dataclass stays the judge of its values: a ``ValueError`` from its ``__post_init__`` becomes
a usage error (exit 2) that names the flag of the field the message names.

Where the base is not the dataclass's defaults but something the command loads (a study's
``[evaluation]``), :func:`explicit_values` takes only the flags given on the command line, the
overrides the library applies to that base; ``dataclass_options(..., base=...)`` says so in
``--help``:

    @dataclass_options(EvalConfig, base="[evaluation]")
    def report(name, **kwargs):
        write_report(url, name, eval_overrides=explicit_values(EvalConfig, kwargs))
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import PurePath
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class FieldOption:
    """One command-line option derived from one (possibly nested) dataclass field."""

    path: str
    """Dotted field path from the top dataclass, e.g. ``"data.max_train_per_persona"``."""
    dest: str
    """The option's parameter name; keys of the command's keyword arguments."""
    flags: tuple[str, ...]
    """Option strings, the primary one first (``("--learning-rate", "--lr")``)."""
    annotation: Any
    """The field's resolved type."""
    default: Any
    """The field's default (unused when ``required``)."""
    required: bool
    """The field has no default."""
    help: str
    """The field's attribute docstring, on one line."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a class and its bases: the string expression right after
    an annotated assignment, as Sphinx reads them (``name: int = 5`` then ``\"\"\"...\"\"\"``).

    Returns:
        Field name -> its docstring, whitespace collapsed and ``literal`` markup removed.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # built in, or defined where no source is kept
            continue
        node = ast.parse(source).body[0]
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt, after in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                text = re.sub(r"``(.*?)``", r"\1", after.value.value)
                docs[stmt.target.id] = " ".join(text.split())
    return docs


def _dest_prefix(cls: type) -> str:
    return f"{cls.__name__.lower()}__"


def _flags(path: str, rename: Mapping[str, str | Sequence[str]]) -> tuple[str, ...]:
    given = rename.get(path)
    if given is None:
        return ("--" + path.rsplit(".", 1)[-1].replace("_", "-"),)
    flags = (given,) if isinstance(given, str) else tuple(given)
    if not flags or not all(flag.startswith("-") for flag in flags):
        raise ValueError(f"rename[{path!r}]={given!r}: expected option strings like '--name'")
    return flags


def _leaf_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, type, dataclasses.Field[Any]]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            yield from _leaf_fields(kind, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", cls, f


def _covers(name: str, path: str) -> bool:
    return path == name or path.startswith(name + ".")


def field_options(
    cls: type,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    rename: Mapping[str, str | Sequence[str]] | None = None,
) -> list[FieldOption]:
    """The options :func:`dataclass_options` adds, in field order.

    Raises:
        ValueError: ``include``, ``exclude`` or ``rename`` names no field of ``cls``, or two
            options would share a flag.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass")
    rename = dict(rename or {})
    leaves = list(_leaf_fields(cls))
    paths = [path for path, _, _ in leaves]
    for what, names in (("include", include or ()), ("exclude", exclude), ("rename", rename)):
        unknown = [n for n in names if not any(_covers(n, p) for p in paths)]
        if unknown:
            raise ValueError(
                f"{what} names no field of {cls.__name__}: {unknown}; fields: {', '.join(paths)}"
            )
    hints: dict[type, dict[str, Any]] = {}
    options: list[FieldOption] = []
    seen: dict[str, str] = {}
    for path, owner, f in leaves:
        if include is not None and not any(_covers(n, path) for n in include):
            continue
        if any(_covers(n, path) for n in exclude):
            continue
        flags = _flags(path, rename)
        for flag in flags:
            if flag in seen:
                raise ValueError(
                    f"{cls.__name__}: fields {seen[flag]!r} and {path!r} both want {flag}; "
                    "rename one"
                )
            seen[flag] = path
        if f.default is not dataclasses.MISSING:
            default, required = f.default, False
        elif f.default_factory is not dataclasses.MISSING:
            default, required = f.default_factory(), False
        else:
            default, required = None, True
        if owner not in hints:
            hints[owner] = typing.get_type_hints(owner)
        options.append(
            FieldOption(
                path=path,
                dest=_dest_prefix(cls) + path.replace(".", "__"),
                flags=flags,
                annotation=hints[owner][f.name],
                default=default,
                required=required,
                help=field_docs(owner).get(f.name, ""),
            )
        )
    return options


def _without_none(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _click_type(annotation: Any, where: str) -> tuple[click.ParamType, bool]:
    """The click type of a field's values, and whether the option repeats (tuples)."""
    kind = _without_none(annotation)
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return _click_type(args[0], where)[0], True
    if typing.get_origin(kind) is typing.Literal:
        values = typing.get_args(kind)
        if all(isinstance(v, str) for v in values):
            return click.Choice(values), False
    if isinstance(kind, type):
        if issubclass(kind, PurePath):
            return click.Path(path_type=kind), False
        simple: dict[type, click.ParamType] = {
            int: click.INT,
            float: click.FLOAT,
            str: click.STRING,
        }
        if kind in simple:
            return simple[kind], False
    raise TypeError(
        f"{where}: no command-line type for {annotation!r}; exclude the field or give it a "
        "type among int, float, str, bool, Path, Literal[str, ...] or tuple[X, ...]"
    )


def _shown_default(option: FieldOption, base: str) -> str:
    """What ``--help`` shows as the default of an option whose base is ``base``."""
    value = option.default
    if _without_none(option.annotation) is bool:
        long = option.flags[0]
        value = long if value else f"--no-{long[2:]}"
    return f"{base} or {'none' if value is None else value}"


def _click_option(cls: type, option: FieldOption, base: str | None = None) -> Callable[[F], F]:
    shown = True if base is None or option.required else _shown_default(option, base)
    settings: dict[str, Any] = {"help": option.help, "show_default": shown}
    if option.required:
        settings["required"] = True
    else:
        settings["default"] = option.default
    if _without_none(option.annotation) is bool:
        long = option.flags[0]
        if not long.startswith("--"):
            raise ValueError(f"{cls.__name__}.{option.path}: a flag's first name must be --long")
        decls = [f"{long}/--no-{long[2:]}", *option.flags[1:]]
        return click.option(*decls, option.dest, is_flag=True, **settings)
    kind, multiple = _click_type(option.annotation, f"{cls.__name__}.{option.path}")
    if multiple:
        settings["multiple"] = True
        settings["default"] = option.default or ()
    return click.option(*option.flags, option.dest, type=kind, **settings)


def dataclass_options(
    cls: type,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    rename: Mapping[str, str | Sequence[str]] | None = None,
    base: str | None = None,
) -> Callable[[F], F]:
    """A click decorator that adds one option per field of the dataclass ``cls``.

    Args:
        cls: The config dataclass; nested dataclass fields add their own fields.
        include: Dotted paths of the fields (or nested dataclasses) to offer; None: all.
        exclude: Dotted paths left out.
        rename: Dotted path -> its option string, or several (the first is primary, the
            others are aliases): ``{"lora_rank": ("--lora-rank", "--rank")}``.
        base: Where the values a flag leaves alone come from, when not from the defaults
            (``"[evaluation]"``, the study's section); ``--help`` then shows ``[default: (BASE
            or DEFAULT)]``, and the command reads the flags with :func:`explicit_values`.

    Returns:
        The decorator; the command reads the values back with :func:`build_dataclass` (or
        :func:`explicit_values`, with a ``base``).
    """
    options = field_options(cls, include=include, exclude=exclude, rename=rename)
    decorators = [_click_option(cls, option, base) for option in options]

    def decorate(f: F) -> F:
        # click lists options in the reverse order of decoration: the fields' order in --help.
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return decorate


def dataclass_values(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the values of ``cls``'s options out of a command's keyword arguments.

    Returns:
        Dotted field path -> value, for every option of ``cls`` on the command (an empty
        repeated option is left out, so that the field keeps its default).
    """
    prefix = _dest_prefix(cls)
    values: dict[str, Any] = {}
    for key in [k for k in kwargs if k.startswith(prefix)]:
        value = kwargs.pop(key)
        if isinstance(value, tuple) and not value:
            continue
        values[key.removeprefix(prefix).replace("__", ".")] = value
    return values


def _construct(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        path = prefix + f.name
        if path in values:
            kwargs[f.name] = values[path]
        elif any(p.startswith(path + ".") for p in values):
            kwargs[f.name] = _construct(hints[f.name], values, path + ".")
    return cls(**kwargs)


def _flags_named_in(message: str, paths: Sequence[str], cls: type) -> list[str]:
    """Primary flags of the running command's options whose field the message names."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return []
    by_dest = {p.name: p for p in ctx.command.params if isinstance(p, click.Option)}
    flags = []
    for path in paths:
        leaf = path.rsplit(".", 1)[-1]
        param = by_dest.get(_dest_prefix(cls) + path.replace(".", "__"))
        if param is not None and re.search(rf"\b{re.escape(leaf)}\b", message):
            flags.append(param.opts[0])
    return flags


def _refuse(cls: type, values: Mapping[str, Any], exc: ValueError) -> NoReturn:
    """Raise the usage error of a value the dataclass refused, naming its flags."""
    flags = _flags_named_in(str(exc), list(values), cls)
    if flags:
        raise click.BadParameter(str(exc), param_hint=flags) from exc
    raise click.UsageError(str(exc)) from exc


def explicit_values(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the values of ``cls``'s options out of ``kwargs``, and return those given on the
    command line (or from an environment variable): the fields to replace on a base the library
    loads (a study's ``[evaluation]``). A flag left at its default is not among them, so the
    base's value stands.

    A value refused whatever the base is refused at once: when the dataclass refuses the given
    values on its defaults and its message names none of the fields left alone (``--min-effect
    -1``). A refusal that names another field (``--temperature 0.7``: "expected 1.0 with greedy
    decoding, or do_sample=True") depends on the base, which judges it.

    Returns:
        Dotted field path -> value, for the options given explicitly.

    Raises:
        click.BadParameter: As :func:`build_dataclass`, for a value refused whatever the base.
    """
    values = dataclass_values(cls, kwargs)
    ctx = click.get_current_context()
    prefix = _dest_prefix(cls)
    given = {
        path: value
        for path, value in values.items()
        if ctx.get_parameter_source(prefix + path.replace(".", "__"))
        not in (None, ParameterSource.DEFAULT)
    }
    try:
        _construct(cls, given)
    except ValueError as exc:
        left_alone = [p.rsplit(".", 1)[-1] for p, _, _ in _leaf_fields(cls) if p not in given]
        if not any(re.search(rf"\b{re.escape(leaf)}\b", str(exc)) for leaf in left_alone):
            _refuse(cls, given, exc)
    return given


def build_dataclass(cls: type[T], kwargs: dict[str, Any]) -> T:
    """Build ``cls`` from the options :func:`dataclass_options` added, taking them out of
    ``kwargs`` (the command's keyword arguments); fields without an option keep defaults.

    Raises:
        click.BadParameter: The dataclass refused a value (its message names the field); the
            error names the field's flag. Exit code 2.
        click.UsageError: The dataclass refused the values without naming one of the flags.
    """
    values = dataclass_values(cls, kwargs)
    try:
        return _construct(cls, values)
    except ValueError as exc:
        _refuse(cls, values, exc)
