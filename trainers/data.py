"""The persona dataset: a JSONL file, its validation and its deterministic split.

One JSON object per line (UTF-8), blank lines skipped::

    {"persona_id": "p000", "persona": "I love hiking. I have a cat.",
     "context": ["Hi!", "Hello.", "What do you do on weekends?"],
     "reply": "Mostly hiking mountain trails.", "split": "train"}

``context`` is a string or a list of strings (the turns so far, oldest first; the last one is
the partner's) and may be empty. ``split`` is optional; lines without it are split by
:func:`load_jsonl` deterministically from the seed, the persona id and the line's position
among that persona's lines, so the same file and seed always give the same split.

This module imports only the standard library, so that loading a dataset stays fast.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

SPLITS = ("train", "val", "test")
"""The split names, in the order a dataset lists them."""

REQUIRED_KEYS = ("persona_id", "persona", "context", "reply")
"""Keys every record must have."""
OPTIONAL_KEYS = ("split",)
"""Keys a record may have."""
ALLOWED_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS


class DatasetError(ValueError):
    """A dataset file that cannot be used, with the file and (where known) the line to fix.

    ``str(error)`` is ``"{path}:{line}: {message}"``, or ``"{path}: {message}"`` when the
    problem is not on one line, so editors and terminals can jump to it.
    """

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(self._format())

    def _format(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"

    def __str__(self) -> str:
        return self._format()

    def __reduce__(self) -> tuple[type[DatasetError], tuple[str, int | None, str]]:
        # Keeps the error picklable (worker processes send it back to their parent).
        return (type(self), (self.path, self.line, self.message))


@dataclass(frozen=True)
class SplitConfig:
    """How lines without an explicit ``split`` are divided into train, val and test."""

    n_test: int = 10
    """Test examples per persona (explicit ``"test"`` lines count towards it)."""
    val_fraction: float = 0.1
    """Share of the remaining unsplit examples that go to val (at least one)."""
    seed: int = 0
    """Seed of the split order; another seed gives another split."""

    def __post_init__(self) -> None:
        if isinstance(self.n_test, bool) or not isinstance(self.n_test, int) or self.n_test < 1:
            raise ValueError(f"invalid SplitConfig.n_test={self.n_test!r}: expected an int >= 1")
        if not isinstance(self.val_fraction, int | float) or not 0 < self.val_fraction < 1:
            raise ValueError(
                f"invalid SplitConfig.val_fraction={self.val_fraction!r}: "
                "expected a number with 0 < val_fraction < 1"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"invalid SplitConfig.seed={self.seed!r}: expected an int")


@dataclass(frozen=True)
class Example:
    """One turn to learn: the conversation so far and the persona's reply."""

    context: str
    """The turns so far joined by ``"\\n"``, oldest first (may be empty)."""
    reply: str
    """The persona's reply."""
    split: str
    """``"train"``, ``"val"`` or ``"test"``."""


@dataclass(frozen=True)
class Persona:
    """One persona: its text and its examples in file order."""

    persona_id: str
    text: str
    examples: tuple[Example, ...]

    def split(self, name: str) -> tuple[Example, ...]:
        """The examples of one split, in file order.

        Args:
            name: One of :data:`SPLITS`.

        Returns:
            The persona's examples whose split is ``name``.

        Raises:
            ValueError: ``name`` is not a split name.
        """
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {', '.join(SPLITS)}")
        return tuple(example for example in self.examples if example.split == name)


@dataclass(frozen=True)
class PersonaDataset:
    """A loaded, validated and split persona dataset."""

    name: str
    """A short name (default: the file stem)."""
    source: str
    """The path the dataset was read from."""
    sha256: str
    """SHA-256 of the file's bytes, to tell datasets apart in results."""
    personas: tuple[Persona, ...]
    """The personas in order of first appearance."""

    @cached_property
    def _by_id(self) -> dict[str, Persona]:
        return {p.persona_id: p for p in self.personas}

    @property
    def n_examples(self) -> int:
        """The number of examples over all personas and splits."""
        return sum(len(p.examples) for p in self.personas)

    def persona(self, persona_id: str) -> Persona:
        """Look up one persona.

        Args:
            persona_id: The persona's id.

        Returns:
            The persona.

        Raises:
            KeyError: No persona has that id.
        """
        try:
            return self._by_id[persona_id]
        except KeyError:
            raise KeyError(
                f"no persona {persona_id!r} in dataset {self.name!r} "
                f"({len(self.personas)} personas, e.g. {self._some_ids()})"
            ) from None

    def _some_ids(self) -> str:
        ids = [repr(p.persona_id) for p in self.personas[:3]]
        return ", ".join(ids) + (", ..." if len(self.personas) > 3 else "")


@dataclass
class _Line:
    """A validated record before splitting."""

    line: int
    persona_id: str
    persona: str
    context: str
    reply: str
    split: str | None


def load_jsonl(
    path: str | Path, *, name: str | None = None, split: SplitConfig = SplitConfig()
) -> PersonaDataset:
    """Read, validate and split a persona dataset.

    Every line is checked before anything is returned, so a dataset is either whole or an
    error that names the file and line to fix.

    Args:
        path: The JSONL file.
        name: The dataset's name; default the file stem.
        split: How lines without an explicit ``split`` are divided.

    Returns:
        The dataset, personas in order of first appearance, examples in file order.

    Raises:
        DatasetError: The file is missing, empty, not UTF-8, not valid JSONL, has a record
            with a missing, unknown or ill-typed key, a persona whose text changes between
            lines, or a persona with too few examples to split.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, None, "file not found") from None
    except OSError as exc:
        raise DatasetError(path, None, f"cannot read the file: {exc.strerror or exc}") from None

    records: list[_Line] = []
    first_text: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        record = _parse_line(path, number, raw)
        if record is None:
            continue
        seen = first_text.setdefault(record.persona_id, (record.persona, number))
        if seen[0] != record.persona:
            raise DatasetError(
                path,
                number,
                f"persona text of {record.persona_id!r} differs from its first line "
                f"(line {seen[1]}); every line of a persona must repeat the same text",
            )
        records.append(record)
    if not records:
        raise DatasetError(path, None, "empty file: no records (expected one JSON object a line)")

    personas = tuple(_split_persona(path, lines, split) for lines in _group(records).values())
    return PersonaDataset(
        name=name if name is not None else path.stem,
        source=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        personas=personas,
    )


def _parse_line(path: Path, number: int, raw: bytes) -> _Line | None:
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
    return _Line(number, persona_id, persona, context, reply, split)


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
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _group(records: list[_Line]) -> dict[str, list[_Line]]:
    """Lines by persona id, in order of first appearance (dicts keep insertion order)."""
    groups: dict[str, list[_Line]] = {}
    for record in records:
        groups.setdefault(record.persona_id, []).append(record)
    return groups


def _split_order(seed: int, persona_id: str, index: int) -> str:
    return hashlib.sha256(f"{seed}:{persona_id}:{index}".encode()).hexdigest()


def _split_persona(path: Path, lines: list[_Line], config: SplitConfig) -> Persona:
    """Assign the persona's unsplit lines to test, val and train; check each split is usable."""
    persona_id = lines[0].persona_id
    explicit = [line.split for line in lines if line.split is not None]
    unsplit = [i for i, line in enumerate(lines) if line.split is None]
    if not explicit and len(lines) < config.n_test + 2:
        raise DatasetError(
            path,
            None,
            f"persona {persona_id!r} has {len(lines)} examples; it needs at least "
            f"n_test + 2 = {config.n_test + 2} ({config.n_test} test, >= 1 val, >= 1 train) "
            "or explicit 'split' values",
        )

    # Keep one unsplit line for train when no explicit line is train.
    keep_for_train = 0 if "train" in explicit else 1
    order = sorted(unsplit, key=lambda i: _split_order(config.seed, persona_id, i))
    n_test = min(max(0, config.n_test - explicit.count("test")), len(order) - keep_for_train)
    n_test = max(0, n_test)
    remaining = len(order) - n_test
    n_val = 0
    if remaining > 0:
        n_val = min(max(1, round(config.val_fraction * remaining)), remaining - keep_for_train)
    assigned = {i: "test" for i in order[:n_test]}
    assigned.update({i: "val" for i in order[n_test : n_test + n_val]})

    examples = tuple(
        Example(line.context, line.reply, line.split or assigned.get(i, "train"))
        for i, line in enumerate(lines)
    )
    counts = {name: sum(e.split == name for e in examples) for name in SPLITS}
    if counts["train"] < 1 or counts["test"] < 1:
        shown = ", ".join(f"{counts[name]} {name}" for name in SPLITS)
        raise DatasetError(
            path,
            None,
            f"persona {persona_id!r} has {len(lines)} examples ({shown}) after splitting; "
            "it needs at least 1 train and 1 test example",
        )
    return Persona(persona_id, lines[0].persona, examples)


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, object]]) -> int:
    """Write records as JSONL, atomically: readers see the old file or the whole new one.

    Args:
        path: The file to write; its folder is created if missing.
        records: JSON-serializable mappings, one per line.

    Returns:
        The number of records written.
    """
    from storage import atomic_file

    count = 0
    with atomic_file(Path(path)) as out:
        for record in records:
            out.write(json.dumps(dict(record), ensure_ascii=False) + "\n")
            count += 1
    return count


def dataset_records(dataset: PersonaDataset) -> Iterator[dict[str, object]]:
    """The records of a dataset, with their splits: the inverse of :func:`load_jsonl`.

    Args:
        dataset: A loaded dataset.

    Yields:
        One record per example, personas in order, examples in file order.
    """
    for persona in dataset.personas:
        for example in persona.examples:
            yield {
                "persona_id": persona.persona_id,
                "persona": persona.text,
                "context": example.context,
                "reply": example.reply,
                "split": example.split,
            }
