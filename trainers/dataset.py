"""The persona dataset's types: a record as a file format reads it, and the split dataset.

Every format in :mod:`trainers.formats` turns a file into :class:`Record` values;
:func:`trainers.data.load_dataset` groups, checks and splits them into a
:class:`PersonaDataset`. Errors are :class:`DatasetError`, which names the file and line.

This module imports only the standard library, so that loading a dataset stays fast.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

SPLITS = ("train", "val", "test")
"""The split names, in the order a dataset lists them."""

PERSONA_ID_PREFIX = "p_"
"""Prefix of persona ids derived from the persona text."""
PERSONA_ID_HEX = 12
"""Hex digits of SHA-256 in a derived persona id (48 bits: no collision among millions)."""
PERSONA_ID_MAX_LENGTH = 200
"""Longest persona id a file may give: the length of the ``personas.key`` column
(``storage.models.PERSONA_KEY_LENGTH``; a test keeps the two equal). Checked while loading so
that a long id is the same error on SQLite, which would store it, and PostgreSQL."""

# Characters that str.splitlines() breaks on; an error message must stay on one line.
_LINE_BREAKS = str.maketrans(
    {ch: repr(ch)[1:-1] for ch in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
)


class DatasetError(ValueError):
    """A dataset file that cannot be used, with the file and (where known) the line to fix.

    ``str(error)`` is ``"{path}:{line}: {message}"``, or ``"{path}: {message}"`` when the
    problem is not on one line, so editors and terminals can jump to it. It is always one
    line: line breaks quoted from the file are shown escaped.
    """

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}".translate(_LINE_BREAKS)

    def __str__(self) -> str:
        return self._format()

    def __reduce__(self) -> tuple[type[DatasetError], tuple[str, int | None, str]]:
        # Keeps the error picklable (worker processes send it back to their parent).
        return (type(self), (self.path, self.line, self.message))


def normalize_text(text: str) -> str:
    """Collapse every run of whitespace (line breaks included) to one space, and strip.

    Args:
        text: Text as read from a file.

    Returns:
        The text on one line.
    """
    return " ".join(text.split())


def persona_id_for(text: str) -> str:
    """A persona id derived from the persona text: the same text is the same persona.

    Args:
        text: The persona text; whitespace differences do not change the id.

    Returns:
        ``"p_"`` and the first 12 hex digits of the SHA-256 of the normalized text.
    """
    digest = hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()
    return PERSONA_ID_PREFIX + digest[:PERSONA_ID_HEX]


@dataclass(frozen=True)
class Record:
    """One example as a file format reads it, before grouping and splitting."""

    line: int
    """The file line the example starts on (1-based), for error messages."""
    persona_id: str
    persona: str
    """The persona text."""
    context: str
    """The turns so far joined by ``"\\n"``, oldest first; the last one is the partner's."""
    reply: str
    split: str | None = None
    """An explicit split from the file, or None to split by :class:`SplitConfig`."""


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
