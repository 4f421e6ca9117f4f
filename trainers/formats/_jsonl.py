"""Our own JSONL format: one example per line, persona ids given by the file.

One JSON object per line (UTF-8), blank lines skipped::

    {"persona_id": "p000", "persona": "I love hiking. I have a cat.",
     "context": ["Hi!", "Hello.", "What do you do on weekends?"],
     "reply": "Mostly hiking mountain trails.", "split": "train"}

``context`` is a string or a list of strings (the turns so far, oldest first; the last one is
the partner's) and may be empty. ``split`` is optional; lines without it are split by
:mod:`trainers.split`. Every line is validated: a bad line is an error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainers.dataset import SPLITS, DatasetError, Record
from trainers.formats._base import DatasetFormat, ParsedFile

REQUIRED_KEYS = ("persona_id", "persona", "context", "reply")
"""Keys every record must have."""
OPTIONAL_KEYS = ("split",)
"""Keys a record may have."""
ALLOWED_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS


class JsonlFormat(DatasetFormat):
    """One JSON object a line with ``persona_id``, ``persona``, ``context``, ``reply``."""

    name = "jsonl"
    description = "one JSON object a line with persona_id, persona, context, reply"
    suffixes = (".jsonl", ".json", ".ndjson")

    def sniff(self, first_line: str) -> bool:
        """A JSON object on the first line."""
        return first_line.lstrip().startswith("{")

    def read(self, path: Path, data: bytes) -> ParsedFile:
        """Read and validate every line.

        Raises:
            DatasetError: A line is not UTF-8, not valid JSON, not an object, or has a
                missing, unknown or ill-typed key.
        """
        parsed = ParsedFile()
        for number, raw in enumerate(data.split(b"\n"), start=1):
            record = _parse_line(path, number, raw)
            if record is not None:
                parsed.records.append(record)
        return parsed


def _parse_line(path: Path, number: int, raw: bytes) -> Record | None:
    """Decode and validate one line; None for a blank line."""
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            path, number, f"not valid UTF-8 (byte {exc.start + 1}: {exc.reason}); save as UTF-8"
        ) from None
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            path, number, f"invalid JSON: {exc.msg} (column {exc.colno}); expected one object"
        ) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise DatasetError(path, number, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise DatasetError(path, number, "invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise DatasetError(
            path, number, f"expected a JSON object, got {type(obj).__name__} {_short(obj)}"
        )
    allowed = ", ".join(ALLOWED_KEYS)
    for key in obj:
        if key not in ALLOWED_KEYS:
            raise DatasetError(path, number, f"unknown key {key!r}; allowed keys: {allowed}")
    for key in REQUIRED_KEYS:
        if key not in obj:
            raise DatasetError(path, number, f"missing key {key!r}; required keys: {allowed}")
    persona_id = _required_str(path, number, obj, "persona_id")
    persona = _required_str(path, number, obj, "persona")
    reply = _required_str(path, number, obj, "reply")
    context = _context(path, number, obj["context"])
    split = obj.get("split")
    if "split" in obj and split not in SPLITS:
        raise DatasetError(
            path, number, f"invalid split {_short(split)}; expected one of {', '.join(SPLITS)}"
        )
    return Record(number, persona_id, persona, context, reply, split)


def _required_str(path: Path, number: int, obj: dict[str, object], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise DatasetError(
            path, number, f"{key!r} must be a string, got {type(value).__name__} {_short(value)}"
        )
    if not value.strip():
        raise DatasetError(path, number, f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _context(path: Path, number: int, value: object) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise DatasetError(
            path,
            number,
            f"'context' must be a string or a list of strings, got {type(value).__name__}",
        )
    for i, turn in enumerate(value):
        if not isinstance(turn, str):
            raise DatasetError(
                path,
                number,
                f"'context'[{i}] must be a string, got {type(turn).__name__} {_short(turn)}",
            )
        if "\n" in turn:
            raise DatasetError(
                path,
                number,
                f"'context'[{i}] contains a line break; give each turn as its own list item",
            )
    return "\n".join(value)


def _short(value: object, limit: int = 40) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):  # a value too deeply nested to show
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
