"""Synthetic-Persona-Chat (Jandaghi et al., 2023): a CSV of two personas and a conversation.

The header names the columns ``user 1 personas``, ``user 2 personas`` and
``Best Generated Conversation`` (others are ignored). A persona cell holds a user's sentences,
one a line; a conversation cell holds turns, one a line, each starting with ``User 1:`` or
``User 2:``. Each user's persona is a persona, and each of its turns a reply whose context is
the turns before it. Lines of a conversation that name no speaker are skipped and counted:
stage directions (``[They walk together.]``, ``(Later)``, ``*At the bar*``, ``* * *``) and
other unlabelled lines (a recipe's ingredient list, ``Adam: You too.``). Labels decorated
with asterisks (``*User 1:* Hi``, ``* User 2: Hello! *``) are read as labels.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from trainers.dataset import DatasetError, normalize_text
from trainers.formats._base import (
    SKIP_EMPTY_TURN,
    SKIP_NO_PERSONA,
    SKIP_STAGE,
    SKIP_UNLABELLED,
    DatasetFormat,
    ParsedFile,
    Turn,
    decode_text,
    dialogue_records,
)

_TURN = re.compile(r"[\s*]*user\s*([12])\s*\**\s*:[\s*]*(.*)", re.IGNORECASE | re.DOTALL)
_STAGE = re.compile(r"\s*(?:[\[(].*|\*.*\*|[-*_=~#.\s]+)", re.DOTALL)


class SyntheticPersonaChatFormat(DatasetFormat):
    """The Synthetic-Persona-Chat CSV: two persona columns and a conversation column."""

    name = "synthetic_persona_chat"
    description = (
        'CSV with columns "user 1 personas", "user 2 personas", "Best Generated Conversation"'
    )
    suffixes = (".csv",)

    PERSONA_COLUMNS = ("user 1 personas", "user 2 personas")
    """The persona of ``User 1`` and of ``User 2``, in that order."""
    CONVERSATION_COLUMN = "Best Generated Conversation"
    SPEAKERS = ("1", "2")

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the header must name."""
        return (*self.PERSONA_COLUMNS, self.CONVERSATION_COLUMN)

    def sniff(self, first_line: str) -> bool:
        """A CSV header that names every required column."""
        try:
            header = next(csv.reader([first_line]), [])
        except csv.Error:
            return False
        return {c.casefold() for c in self.columns} <= {c.strip().casefold() for c in header}

    def read(self, path: Path, data: bytes) -> ParsedFile:
        """Read every conversation row.

        Raises:
            DatasetError: The file is not UTF-8 or not valid CSV, the header lacks a column,
                or a row has fewer fields than the header needs.
        """
        # strict: an unclosed quote is an error, not a cell that swallows the rest of the file.
        reader = csv.reader(io.StringIO(decode_text(path, data), newline=""), strict=True)
        parsed = ParsedFile()
        start = 1  # the line the row being read starts on
        try:
            header = next(reader, None)
            if header is None:
                return parsed
            index = self._column_index(path, header)
            width = max(index) + 1
            start = reader.line_num + 1
            for row in reader:
                if row and len(row) < width:
                    raise DatasetError(
                        path,
                        start,
                        f"row has {len(row)} fields; the header needs {width} "
                        f"({', '.join(repr(c) for c in self.columns)})",
                    )
                if row:
                    self._read_row(row, index, start, parsed)
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DatasetError(
                path, start, f"invalid CSV in the row starting here: {exc}"
            ) from None
        return parsed

    def _column_index(self, path: Path, header: list[str]) -> list[int]:
        names = [cell.strip().casefold() for cell in header]
        missing = [column for column in self.columns if column.casefold() not in names]
        if missing:
            raise DatasetError(
                path,
                1,
                f"header lacks column(s) {', '.join(repr(c) for c in missing)}; "
                f"expected {self.description}",
            )
        return [names.index(column.casefold()) for column in self.columns]

    def _read_row(self, row: list[str], index: list[int], start: int, parsed: ParsedFile) -> None:
        *persona_cells, conversation = (row[i] for i in index)
        personas = {
            speaker: normalize_text(cell)
            for speaker, cell in zip(self.SPEAKERS, persona_cells, strict=True)
        }
        # The line the conversation cell starts on: after the line breaks of the cells before.
        first = start + sum(row[i].count("\n") for i in range(index[-1]))
        turns = []
        for offset, raw in enumerate(conversation.split("\n")):
            text = raw.strip()
            if not text:
                continue
            match = _TURN.fullmatch(text)
            if match is None:
                parsed.skipped[SKIP_STAGE if _STAGE.fullmatch(text) else SKIP_UNLABELLED] += 1
                continue
            speaker, said = match.groups()
            if text.startswith("*"):  # "* User 1: Hello! *": the closing asterisk too
                said = said.rstrip("* \t")
            said = normalize_text(said)
            if not said:
                parsed.skipped[SKIP_EMPTY_TURN] += 1
            elif not personas[speaker]:
                parsed.skipped[SKIP_NO_PERSONA] += 1
                turns.append(Turn(speaker, said, first + offset))
            else:
                turns.append(Turn(speaker, said, first + offset))
        parsed.records.extend(dialogue_records(turns, personas))
