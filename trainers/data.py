"""Load a persona dataset from a file in any known format, check it, split it, summarize it.

:func:`load_dataset` reads the file with its format (:mod:`trainers.formats`: our JSONL,
the Synthetic-Persona-Chat CSV, PersonaChat/ConvAI2 text; detected from the file unless
named), groups the examples by persona, drops personas with too few examples when asked,
and splits each persona (:mod:`trainers.split`). A dataset is either whole or an error that
names the file (and line) to fix. The types live in :mod:`trainers.dataset` and are
re-exported here.

This module imports only the standard library, so that loading a dataset stays fast.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trainers.dataset import (
    PERSONA_ID_MAX_LENGTH,
    SPLITS,
    DatasetError,
    Example,
    Persona,
    PersonaDataset,
    Record,
    persona_id_for,
)
from trainers.formats import FORMATS, detect_format, get_format
from trainers.formats._jsonl import ALLOWED_KEYS, OPTIONAL_KEYS, REQUIRED_KEYS
from trainers.input_file import DATASET_MAX_BYTES, InputFileError, read_input_file
from trainers.split import DEFAULT_SPLIT, SplitConfig, select_personas, split_persona

__all__ = [
    "ALLOWED_KEYS",
    "FORMATS",
    "OPTIONAL_KEYS",
    "PERSONA_ID_MAX_LENGTH",
    "REQUIRED_KEYS",
    "SPLITS",
    "DatasetError",
    "Example",
    "LoadResult",
    "LoadSummary",
    "Persona",
    "PersonaDataset",
    "SplitConfig",
    "dataset_records",
    "load_dataset",
    "load_jsonl",
    "persona_id_for",
    "write_jsonl",
]


@dataclass(frozen=True)
class LoadSummary:
    """What an import kept, dropped and skipped."""

    format: str
    """The name of the format the file was read as."""
    personas_kept: int
    personas_dropped: int
    """Personas with fewer than ``min_examples`` examples."""
    min_examples: int | None
    """The threshold personas were dropped by (None: none dropped)."""
    examples: dict[str, int] = field(default_factory=dict)
    """Examples of the kept personas per split, in :data:`SPLITS` order."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Lines skipped by reason (stage directions, unlabelled lines, ...); blank lines aside."""

    @property
    def lines_skipped(self) -> int:
        """Lines skipped over all reasons."""
        return sum(self.skipped.values())

    def line(self) -> str:
        """The summary on one line, e.g. ``convai2: kept 3 personas, dropped 0; ...``."""
        dropped = f"dropped {self.personas_dropped}"
        if self.min_examples is not None:
            dropped += f" with fewer than {self.min_examples} examples"
        splits = ", ".join(f"{self.examples.get(name, 0)} {name}" for name in SPLITS)
        skipped = f"skipped {self.lines_skipped} lines"
        if self.skipped:
            reasons = sorted(self.skipped.items(), key=lambda item: (-item[1], item[0]))
            skipped += " (" + ", ".join(f"{n} {reason}" for reason, n in reasons) + ")"
        return (
            f"{self.format}: kept {self.personas_kept} personas, {dropped}; "
            f"examples {splits}; {skipped}"
        )


@dataclass(frozen=True)
class LoadResult:
    """A loaded dataset and the summary of its import."""

    dataset: PersonaDataset
    summary: LoadSummary


def load_dataset(
    path: str | Path,
    *,
    name: str | None = None,
    format: str | None = None,
    split: SplitConfig = DEFAULT_SPLIT,
    min_examples: int | None = None,
) -> LoadResult:
    """Read, validate and split a persona dataset in any known format.

    Args:
        path: The dataset file.
        name: The dataset's name; default the file stem.
        format: A name from :data:`FORMATS` to force; default detect it from the first
            non-blank line, else from the extension.
        split: How examples without an explicit split are divided.
        min_examples: Drop personas with fewer examples (counted in the summary); default
            keep all, and a persona too small to split is an error.

    Returns:
        The dataset (personas in order of first appearance, examples in file order) and its
        summary.

    Raises:
        DatasetError: The file is missing or unreadable, not a regular file (a FIFO, a
            device, a folder) or over 2 GiB (:data:`~trainers.input_file.DATASET_MAX_BYTES`),
            its format cannot be detected, a line cannot be read in its format, a persona's
            text changes between lines, it has no examples, or personas are too small to split
            (the message counts them, names the first few, and suggests ``--min-examples`` or
            ``--n-test``).
        ValueError: ``format`` names no format, or ``min_examples`` is not an int >= 1.
    """
    if min_examples is not None and (
        isinstance(min_examples, bool) or not isinstance(min_examples, int) or min_examples < 1
    ):
        raise ValueError(f"invalid min_examples={min_examples!r}: expected an int >= 1 or None")
    path = Path(path)
    fmt = get_format(format) if format is not None else None
    try:
        data = read_input_file(path, limit=DATASET_MAX_BYTES, what="a dataset file")
    except InputFileError as exc:
        raise DatasetError(path, None, "file not found" if exc.missing else exc.reason) from None
    if fmt is None:
        fmt = detect_format(path, data)

    parsed = fmt.read(path, data)
    if not parsed.records:
        if parsed.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in parsed.skipped.items())
            raise DatasetError(
                path,
                None,
                f"no examples: every line was skipped ({reasons}); expected {fmt.description}",
            )
        raise DatasetError(path, None, f"empty file: no records (expected {fmt.description})")
    groups = _group(path, parsed.records)
    kept, dropped = select_personas(path, groups, split, min_examples)
    personas = tuple(split_persona(path, groups[pid], split) for pid in kept)

    counts = {name: 0 for name in SPLITS}
    for persona in personas:
        for example in persona.examples:
            counts[example.split] += 1
    dataset = PersonaDataset(
        name=name if name is not None else path.stem,
        source=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        personas=personas,
    )
    summary = LoadSummary(
        format=fmt.name,
        personas_kept=len(kept),
        personas_dropped=len(dropped),
        min_examples=min_examples,
        examples=counts,
        skipped=dict(parsed.skipped),
    )
    return LoadResult(dataset, summary)


def load_jsonl(
    path: str | Path, *, name: str | None = None, split: SplitConfig = DEFAULT_SPLIT
) -> PersonaDataset:
    """Read, validate and split a dataset in our JSONL format (see :mod:`trainers.formats`).

    Args:
        path: The JSONL file.
        name: The dataset's name; default the file stem.
        split: How lines without an explicit ``split`` are divided.

    Returns:
        The dataset, personas in order of first appearance, examples in file order.

    Raises:
        DatasetError: As :func:`load_dataset`.
    """
    return load_dataset(path, name=name, format="jsonl", split=split).dataset


def _group(path: Path, records: list[Record]) -> dict[str, list[Record]]:
    """Records by persona id, in order of first appearance; every text storable and one
    persona text per id."""
    groups: dict[str, list[Record]] = {}
    first_text: dict[str, tuple[str, int]] = {}
    for record in records:
        _check_storable(path, record)
        seen = first_text.setdefault(record.persona_id, (record.persona, record.line))
        if seen[0] != record.persona:
            raise DatasetError(
                path,
                record.line,
                f"persona text of {record.persona_id!r} differs from its first line "
                f"(line {seen[1]}); every line of a persona must repeat the same text",
            )
        groups.setdefault(record.persona_id, []).append(record)
    return groups


def _check_storable(path: Path, record: Record) -> None:
    """Reject what a database cannot store: NUL, unpaired surrogates, a persona id over
    :data:`PERSONA_ID_MAX_LENGTH` characters."""
    if len(record.persona_id) > PERSONA_ID_MAX_LENGTH:
        raise DatasetError(
            path,
            record.line,
            f"'persona_id' has {len(record.persona_id)} characters "
            f"({record.persona_id[:20]!r}...); use at most {PERSONA_ID_MAX_LENGTH}",
        )
    for key in ("persona_id", "persona", "context", "reply"):
        value: str = getattr(record, key)
        if "\x00" in value:
            raise DatasetError(path, record.line, f"{key!r} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DatasetError(
                path,
                record.line,
                f"{key!r} contains an unpaired surrogate {value[exc.start]!r}; "
                "the text must be valid Unicode",
            ) from None


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
