"""The contract of a dataset format, and the parts that conversation formats share."""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from trainers.dataset import DatasetError, Record, persona_id_for

SKIP_STAGE = "stage direction"
"""A line such as ``[They walk to the park.]`` or ``* * *``."""
SKIP_UNLABELLED = "unlabelled"
"""A line that names no speaker (or one the format does not know)."""
SKIP_EMPTY_TURN = "empty turn"
"""A speaker label with no text after it."""
SKIP_NO_PERSONA = "no persona"
"""A turn that gives no example: its speaker has no persona text (it is still context)."""


@dataclass
class ParsedFile:
    """What a format read from a file: the records in file order and the skipped lines."""

    records: list[Record] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    """Lines that were not used, by reason (blank lines are not counted)."""


class DatasetFormat(abc.ABC):
    """A dataset file format: how to recognize a file and how to read its examples.

    Subclasses set :attr:`name`, :attr:`description` and :attr:`suffixes`, and implement
    :meth:`sniff` and :meth:`read`. ``read`` returns every usable example as a
    :class:`~trainers.dataset.Record`, in file order, and counts the lines it skipped by
    reason; a file it cannot read raises :class:`~trainers.dataset.DatasetError` with a
    one-line message naming the file (and line, where known), never another exception.
    Grouping by persona, the persona-text check and the split happen after ``read``, the
    same for every format.
    """

    name: ClassVar[str]
    """The name that ``format=`` (``--format``) takes."""
    description: ClassVar[str]
    """One line saying what the file looks like, for errors."""
    suffixes: ClassVar[tuple[str, ...]]
    """File extensions (lower case, with the dot) that suggest this format."""

    @abc.abstractmethod
    def sniff(self, first_line: str) -> bool:
        """Whether a file whose first non-blank line is ``first_line`` is in this format."""

    @abc.abstractmethod
    def read(self, path: Path, data: bytes) -> ParsedFile:
        """Read the examples of a file.

        Args:
            path: The file, for error messages.
            data: The file's bytes.

        Returns:
            The records in file order and the skipped lines by reason.

        Raises:
            DatasetError: The file cannot be read in this format.
        """


def decode_text(path: Path, data: bytes) -> str:
    """Decode a whole file as UTF-8 (a byte-order mark is dropped).

    Raises:
        DatasetError: The bytes are not UTF-8; the message names the line and the byte.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        raise DatasetError(
            path,
            data.count(b"\n", 0, exc.start) + 1,
            f"not valid UTF-8 (byte {exc.start - line_start + 1}: {exc.reason}); save as UTF-8",
        ) from None


@dataclass(frozen=True)
class Turn:
    """One turn of a dialogue."""

    speaker: str
    text: str
    line: int
    """The file line the turn is on."""


def dialogue_records(turns: Sequence[Turn], personas: Mapping[str, str]) -> list[Record]:
    """The examples of one dialogue: each turn of a speaker with a persona, after the turns
    before it.

    Consecutive turns of one speaker (say around a skipped stage direction) are joined into
    one turn, so that the turns of a context alternate, as :func:`trainers.prompt.build_prompt`
    expects.

    Args:
        turns: The dialogue's turns in order; texts already on one line.
        personas: Persona text by speaker; speakers without one give no examples.

    Returns:
        One record per turn of a speaker with a persona; the context is every turn before
        it, oldest first (empty for the first turn).
    """
    merged: list[Turn] = []
    for turn in turns:
        if merged and merged[-1].speaker == turn.speaker:
            last = merged[-1]
            merged[-1] = Turn(last.speaker, f"{last.text} {turn.text}", last.line)
        else:
            merged.append(turn)
    records = []
    for i, turn in enumerate(merged):
        persona = personas.get(turn.speaker)
        if persona:
            context = "\n".join(t.text for t in merged[:i])
            records.append(Record(turn.line, persona_id_for(persona), persona, context, turn.text))
    return records
