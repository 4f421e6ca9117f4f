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

Standard library only, like :mod:`trainers.data`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = [
    "ADAPTER_CONFIG_MAX_BYTES",
    "CONFIG_MAX_BYTES",
    "DATASET_MAX_BYTES",
    "InputFileError",
    "check_input_file",
    "read_input_file",
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


class InputFileError(ValueError):
    """An input path that is not a regular file we can read, or too large.

    ``str(error)`` is ``"{path}: {reason}"`` on one line; ``missing`` tells a path that does
    not exist, for callers that word that case their own way.
    """

    def __init__(self, path: str | Path, reason: str, missing: bool = False) -> None:
        self.path = str(path)
        self.reason = reason
        self.missing = missing
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[InputFileError], tuple[str, str, bool]]:
        return (type(self), (self.path, self.reason, self.missing))


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
