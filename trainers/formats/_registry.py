"""The formats by name, and the detection of a file's format from its content and name."""

from __future__ import annotations

from pathlib import Path

from trainers.dataset import DatasetError
from trainers.formats._base import DatasetFormat
from trainers.formats._convai2 import ConvAI2Format
from trainers.formats._jsonl import JsonlFormat
from trainers.formats._synthetic_persona_chat import SyntheticPersonaChatFormat

FORMATS: dict[str, type[DatasetFormat]] = {
    f.name: f for f in (JsonlFormat, SyntheticPersonaChatFormat, ConvAI2Format)
}
"""Every format by its name, in the order detection tries them."""

SNIFF_BYTES = 1 << 16
"""How much of the file's start detection reads to find the first non-blank line."""


def get_format(name: str) -> DatasetFormat:
    """The format called ``name``.

    Raises:
        ValueError: No format has that name; the message lists the names.
    """
    try:
        return FORMATS[name]()
    except KeyError:
        raise ValueError(
            f"unknown dataset format {name!r}; expected one of {', '.join(FORMATS)}"
        ) from None


def detect_format(path: Path, data: bytes) -> DatasetFormat:
    """The format of a file: from its first non-blank line, else from its extension.

    Args:
        path: The file (its suffix is the fallback).
        data: The file's bytes.

    Returns:
        The first format whose :meth:`~DatasetFormat.sniff` accepts the first non-blank
        line, else the format whose suffixes hold the file's extension.

    Raises:
        DatasetError: Neither the content nor the extension tells; the message lists the
            formats and says how to name one.
    """
    head = data[:SNIFF_BYTES].decode("utf-8-sig", errors="replace")
    first_line = next((line for line in head.split("\n") if line.strip()), "")
    formats = [f() for f in FORMATS.values()]
    for fmt in formats:
        if first_line and fmt.sniff(first_line):
            return fmt
    suffix = path.suffix.lower()
    for fmt in formats:
        if suffix in fmt.suffixes:
            return fmt
    listed = "; ".join(f"{f.name} ({f.description})" for f in formats)
    raise DatasetError(
        path,
        None,
        f"cannot tell the dataset format from the first line or the extension {suffix!r}; "
        f"name it with --format: {listed}",
    )
