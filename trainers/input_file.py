"""Read an input file only if it is a regular file of bounded size.

A FIFO given as a dataset or config blocks ``open`` until a writer comes (forever, in
practice); ``/dev/zero`` or ``/dev/urandom`` is read until memory runs out; a folder fails
with a message that depends on where it was caught. Every file we read from the user
(datasets of every format, study configs, adapter files) goes through :func:`read_input_file`
or :func:`check_input_file`, which look at ``os.stat`` first and refuse at once anything that
is not a regular file, or a regular file over the limit of its kind.

The file is opened with ``O_NONBLOCK`` and checked again on the open descriptor, so a file
swapped for a FIFO between the two checks cannot block either, and at most ``limit + 1``
bytes are read, so a file that grows past the limit meanwhile is refused too.

Every JSON or TOML file we read whole (study configs, ``adapter_config.json``, the JSON files
we wrote and read back) is parsed by :func:`parse_json` / :func:`parse_toml` (or
:func:`read_json` / :func:`read_toml`, which read it first). Python's parsers recurse once per
level of nesting, so ``[[[[...]]]]`` 100,000 deep raises ``RecursionError`` ("maximum
recursion depth exceeded", no file named); these refuse anything nested deeper than
:data:`MAX_NESTING` before parsing (a scan that skips strings and comments, so the error
names the line), and turn every parse error into an :class:`InputFileError` naming the file,
the line where known, and the cause. (JSONL datasets are parsed line by line in
:mod:`trainers.formats`, whose errors name the file and the line too, RecursionError
included.)

Standard library only, like :mod:`trainers.data`.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

__all__ = [
    "ADAPTER_CONFIG_MAX_BYTES",
    "CONFIG_MAX_BYTES",
    "DATASET_MAX_BYTES",
    "MAX_NESTING",
    "RECORD_MAX_BYTES",
    "InputFileError",
    "check_input_file",
    "parse_json",
    "parse_toml",
    "read_input_file",
    "read_json",
    "read_toml",
]

GIB = 1024**3
MIB = 1024**2

DATASET_MAX_BYTES = 2 * GIB
"""Largest dataset file read (any format): it is read whole into memory, and the largest
public persona datasets are a few hundred MiB."""
CONFIG_MAX_BYTES = 1 * MIB
"""Largest study config (TOML): a real one is a few KiB."""
ADAPTER_CONFIG_MAX_BYTES = 1 * MIB
"""Largest ``adapter_config.json``: a real one is under 2 KiB."""
RECORD_MAX_BYTES = 256 * MIB
"""Largest JSON file of ours read back (a results file, the setup record beside an adapter):
a study's results with 100,000 personas' routes are a few tens of MiB."""
MAX_NESTING = 64
"""Deepest nesting of arrays and tables (objects) accepted in a JSON or TOML file: ours are a
few levels deep, and Python's parsers run out of recursion at a few hundred."""


class InputFileError(ValueError):
    """An input path that is not a regular file we can read, or too large.

    ``str(error)`` is ``"{path}: {reason}"`` on one line (a parse error's reason starts with
    ``line N:`` where the line is known, also in ``line``); ``missing`` tells a path that does
    not exist, for callers that word that case their own way.
    """

    def __init__(
        self, path: str | Path, reason: str, missing: bool = False, line: int | None = None
    ) -> None:
        self.path = str(path)
        self.reason = reason
        self.missing = missing
        self.line = line
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(
        self,
    ) -> tuple[type[InputFileError], tuple[str, str, bool, int | None]]:
        return (type(self), (self.path, self.reason, self.missing, self.line))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _size(n: int) -> str:
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n} bytes"


def _check_stat(path: Path, info: os.stat_result, limit: int | None, what: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(path, f"{_kind(info.st_mode)}, not {what}")
    if limit is not None and info.st_size > limit:
        raise InputFileError(
            path, f"{_size(info.st_size)}, over the limit of {_size(limit)} for {what}"
        )


def check_input_file(path: str | Path, *, limit: int | None, what: str) -> os.stat_result:
    """Refuse ``path`` unless it is a regular file (symlinks followed) of at most ``limit``
    bytes, without opening it.

    Args:
        path: The file.
        limit: The largest size accepted; None for no limit (the reader maps the file).
        what: What the file should be, for the message ("a dataset file").

    Returns:
        The file's ``os.stat`` result.

    Raises:
        InputFileError: Missing, unreadable, a folder, a FIFO, a device, a socket, or over
            the limit; the message names the path and what it is.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(path, f"no such file; give {what}", missing=True) from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    _check_stat(path, info, limit, what)
    return info


def read_input_file(path: str | Path, *, limit: int, what: str) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes.

    Args:
        path: The file.
        limit: The largest size accepted.
        what: What the file should be, for the message ("a dataset file").

    Returns:
        The whole file.

    Raises:
        InputFileError: As :func:`check_input_file`, or if the file cannot be opened or grew
            past the limit while it was read.
    """
    path = Path(path)
    check_input_file(path, limit=limit, what=what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        _check_stat(path, os.fstat(handle.fileno()), limit, what)
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise InputFileError(path, f"grew over the limit of {_size(limit)} for {what}")
    return data


_JSON_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|[\[\]{}\n]')
"""What the nesting scan of JSON looks at: strings (skipped), brackets and line ends."""
_TOML_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\')'
_TOML_TOKENS = re.compile(
    rf"(?P<key>{_TOML_KEY_PART}(?:[ \t]*\.[ \t]*{_TOML_KEY_PART}){{{MAX_NESTING + 1},}})"
    r'|"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*'
    r"|[\[\]{}\n]",
    re.DOTALL,
)
"""The same for TOML: strings and comments skipped; a dotted key (``a.b.c... = 1``,
``[a.b.c...]``) nests tables too, and ``tomllib`` takes time quadratic in its parts (most of
an hour for a 1 MiB key), so one that nests deeper than :data:`MAX_NESTING` is refused here
(a shorter one under a deep table is counted after parsing)."""
_TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")
"""Where ``tomllib`` says its error is (Python 3.11 has no ``lineno`` on the error)."""


def _parse_error(path: Path, reason: str, line: int | None) -> InputFileError:
    return InputFileError(path, reason if line is None else f"line {line}: {reason}", line=line)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _parse_error(path, f"not valid UTF-8 ({exc.reason}); save as UTF-8", line) from None


def _check_nesting(path: Path, text: str, tokens: re.Pattern[str], *marks: str) -> None:
    """Refuse ``text`` if its brackets nest deeper than :data:`MAX_NESTING` (or, in TOML, a
    dotted key has more parts), naming the line."""
    if sum(text.count(mark) for mark in ("[", "{", *marks)) <= MAX_NESTING:
        return  # cannot be deeper: skip the scan (every JSONL line, most files)
    depth, line = 0, 1
    for match in tokens.finditer(text):
        token = match.group()
        if match.lastgroup == "key":
            raise _parse_error(
                path, f"tables nested deeper than {MAX_NESTING} levels (a dotted key)", line
            )
        if token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise _parse_error(path, f"nested deeper than {MAX_NESTING} levels", line)
        elif token in "]}":
            depth = max(depth - 1, 0)
        else:
            line += token.count("\n")


def _deepest(value: Any) -> int:
    """How deep lists and dicts nest in a parsed value (1 for a flat one), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING + 1:  # past it, the answer is known
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(data: bytes, path: str | Path) -> Any:
    """The JSON document ``data`` read from ``path``.

    Raises:
        InputFileError: Not UTF-8, nested deeper than :data:`MAX_NESTING`, or not valid JSON;
            the message names ``path``, the line and the cause.
    """
    path = Path(path)
    text = _decode(path, data)
    _check_nesting(path, text, _JSON_TOKENS)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _parse_error(
            path, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno
        ) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise _parse_error(path, f"not valid JSON: {exc}", None) from None
    except RecursionError:  # the scan stops this first; kept so no parse escapes unnamed
        raise _parse_error(path, f"nested deeper than {MAX_NESTING} levels", None) from None


def parse_toml(data: bytes, path: str | Path) -> dict[str, Any]:
    """The TOML document ``data`` read from ``path``.

    Raises:
        InputFileError: Not UTF-8, nested deeper than :data:`MAX_NESTING` (arrays, inline
            tables, or tables by dotted keys), or not valid TOML; the message names ``path``,
            the line where known and the cause.
    """
    path = Path(path)
    text = _decode(path, data)
    _check_nesting(path, text, _TOML_TOKENS, ".")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = " ".join(str(exc).split()) or "invalid"
        found = _TOML_LINE.search(message)
        if found is None:
            raise _parse_error(path, f"not valid TOML: {message}", None) from None
        where = f"{message[: found.start()].rstrip()} (column {found.group(2)})"
        raise _parse_error(path, f"not valid TOML: {where}", int(found.group(1))) from None
    except RecursionError:
        raise _parse_error(path, f"nested deeper than {MAX_NESTING} levels", None) from None
    # Dotted keys (a.b.c... = 1, [a.b.c...]) nest tables without brackets: counted here.
    if _deepest(document) > MAX_NESTING + 1:  # + 1: the document itself is a table
        raise _parse_error(
            path, f"tables nested deeper than {MAX_NESTING} levels (dotted keys)", None
        )
    return document


def read_json(path: str | Path, *, limit: int, what: str) -> Any:
    """:func:`read_input_file` then :func:`parse_json`."""
    return parse_json(read_input_file(path, limit=limit, what=what), path)


def read_toml(path: str | Path, *, limit: int, what: str) -> dict[str, Any]:
    """:func:`read_input_file` then :func:`parse_toml`."""
    return parse_toml(read_input_file(path, limit=limit, what=what), path)
