"""Type checking of TOML values against dataclass annotations, with one-line errors.

A study config (:mod:`hpo.study.config`) is plain TOML; :func:`build` turns a table into a
dataclass, checking every value against its field's annotation first (``true`` is not an integer, an
integer is a fine number, a list becomes a tuple) and then the dataclass's own range checks.
Every error is a :class:`ConfigError` of one line that names the field, e.g.
``study.toml: study.n_trials=3.7: expected an integer``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")
_NONE_TYPE = type(None)


class ConfigError(ValueError):
    """A study config is invalid; the message names the file and the field."""


def short(value: Any) -> str:
    """``repr`` cut to a length that keeps an error on one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
_PLURALS = {bool: "booleans", int: "integers", float: "finite numbers", str: "strings"}


def describe(hint: Any, plural: bool = False) -> str:
    """What a value of this type looks like in TOML, for an error message."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        text = " or ".join(describe(a, plural) for a in args if a is not _NONE_TYPE)
        return f"{text} or none" if _NONE_TYPE in args else text
    if hint is Any:
        return "values" if plural else "any value"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "tables" if plural else "a table"
    if origin is tuple:
        return "lists" if plural else f"a list of {describe(get_args(hint)[0], plural=True)}"
    if origin is Literal:
        return " or ".join(map(repr, get_args(hint)))
    return (_PLURALS if plural else _NAMES).get(hint, str(hint))


def _mismatch(value: Any, hint: Any, where: str) -> ConfigError:
    return ConfigError(f"{where}={short(value)}: expected {describe(hint)}")


_HINTS: dict[type, dict[str, Any]] = {}


def field_hints(cls: type) -> dict[str, Any]:
    """The resolved field annotations of a dataclass (computed once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(name: Any) -> str:
    """A key as TOML writes it: bare, or quoted when it holds other characters (a newline)."""
    text = str(name)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)


def child(where: str, name: Any) -> str:
    """The dotted name of a key below ``where`` (``FILE: `` starts a file's top level)."""
    name = toml_key(name)
    return f"{where}{name}" if not where or where.endswith(": ") else f"{where}.{name}"


def convert(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``hint``, and return it in that type.

    ``bool`` is not an ``int``; an ``int`` is a fine ``float`` (kept as given); lists become
    tuples; tables become dataclasses (an instance is checked field by field).

    Raises:
        ConfigError: Naming ``where``, the value and the expected type.
    """
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and _NONE_TYPE in args:
            return None
        options = [arg for arg in args if arg is not _NONE_TYPE]
        if len(options) == 1 and value is not None:
            return convert(value, options[0], where)  # its own, more precise error
        for arg in options:
            try:
                return convert(value, arg, where)
            except ConfigError:
                continue
        raise _mismatch(value, hint, where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            check_fields(value, where)
            return value
        return build(hint, value, where)
    if origin is tuple:
        item_hint = get_args(hint)[0]
        if not isinstance(value, list | tuple):
            raise _mismatch(value, hint, where)
        return tuple(convert(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        value_hint = get_args(hint)[1]
        if not isinstance(value, dict):
            raise _mismatch(value, hint, where)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: key {short(key)}: expected a string")
            out[key] = convert(item, value_hint, child(where, key))
        return out
    if origin is Literal:
        if not any(same_choice(value, choice) for choice in get_args(hint)):
            raise ConfigError(
                f"{where}={short(value)}: expected one of {', '.join(map(repr, get_args(hint)))}"
            )
        return value
    if hint is float:
        # inf and nan are valid TOML, but no field means them, and nan != nan in comparisons
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint in (bool, str):
        ok = isinstance(value, hint)
    else:
        raise TypeError(f"{where}: the config checker does not know the type {hint!r}")
    if not ok:
        raise _mismatch(value, hint, where)
    return value


def check_fields(obj: Any, where: str = "") -> None:
    """Check every field of a dataclass instance against its annotation."""
    hints = field_hints(type(obj))
    for f in dataclasses.fields(obj):
        convert(getattr(obj, f.name), hints[f.name], child(where, f.name))


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_INVALID = "invalid "


def _field_message(cls: type, where: str, exc: ValueError) -> str:
    """A check's message below ``where``: ``where.field=...`` when it starts with a field."""
    message = first_line(exc)
    if not where:
        return message
    names = {f.name for f in dataclasses.fields(cls)}
    # "invalid top_k=5: ..." (evaluators.config's checks) reads as "top_k=5: ..." below a table
    if message.startswith(_INVALID) and re.split(r"[=:.\[ ]", message[len(_INVALID) :])[0] in names:
        message = message[len(_INVALID) :]
    first = re.split(r"[=:.\[ ]", message, maxsplit=1)[0]
    if first in names:
        return f"{where}{message}" if where.endswith(": ") else f"{where}.{message}"
    return f"{where.rstrip(': ')}: {message}"


def build(cls: type[T], data: Any, where: str) -> T:
    """Build a dataclass from a table: unknown keys, types and ranges checked, each named.

    Raises:
        ConfigError: Naming ``where`` and the field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip(': ')}={short(data)}: expected a table")
    hints = field_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    names = sorted(f.name for f in fields)
    unknown = sorted(str(key) for key in data if key not in names)
    if unknown:
        raise ConfigError(
            f"{child(where, unknown[0])}: unknown key; expected one of {', '.join(names)}"
        )
    for f in fields:
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in data:
            raise ConfigError(
                f"{child(where, f.name)}: missing; expected {describe(hints[f.name])}"
            )
    kwargs = {name: convert(value, hints[name], child(where, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(_field_message(cls, where, exc)) from exc


def replace_checked(obj: T, changes: Mapping[str, Any], where: str) -> T:
    """A dataclass instance with some fields replaced, the whole checked as :func:`build`
    checks a table (an unknown field, each value's type, then the dataclass's own checks).

    Raises:
        ConfigError: Naming ``where`` and the field.
    """
    fields = dataclasses.fields(obj)  # type: ignore[arg-type]
    current = {f.name: getattr(obj, f.name) for f in fields if f.init}
    return build(type(obj), {**current, **changes}, where)


def require(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"{name}={short(value)}: expected {expected}")


def in_range(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def same_choice(value: Any, choice: Any) -> bool:
    """Equal and of the same kind: ``True`` is not ``1``, ``2`` is ``2.0``."""
    if isinstance(value, bool) or isinstance(choice, bool):
        return type(value) is type(choice) and value == choice
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(choice, numbers):
        return value == choice
    return type(value) is type(choice) and value == choice
