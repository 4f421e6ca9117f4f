"""PersonaChat / ConvAI2 in ParlAI's text format: numbered lines, a dialogue at a time.

A dialogue's lines are numbered from 1; a line numbered 1 starts the next dialogue::

    1 your persona: i like to remodel homes.
    2 your persona: i like to go hunting.
    3 hi , how are you doing ?\tyou must be very fast . hunting is one of my hobbies .\t\tcand|...
    4 i am ! i like canning .\ti also remodel homes when i am not out bow hunting .

``your persona:`` lines hold the persona of the self side; a turn line is the partner's turn,
a tab, and the self turn (optional label candidates follow after two tabs). Each self turn is
a reply whose context is the turns before it. The "both" variants also list
``partner's persona:`` lines: the partner gives no examples, so they are skipped and counted;
so are lines without a number, and the turns of dialogues without a ``your persona`` line
(the "none" variants). A partner turn ``__SILENCE__`` (self speaks first) is left out.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainers.dataset import normalize_text
from trainers.formats._base import (
    SKIP_EMPTY_TURN,
    SKIP_NO_PERSONA,
    SKIP_UNLABELLED,
    DatasetFormat,
    ParsedFile,
    Turn,
    decode_text,
    dialogue_records,
)

SKIP_PARTNER_PERSONA = "partner's persona"
"""A ``partner's persona:`` line: only the self side gives examples."""

_NUMBERED = re.compile(r"(\d+) (.*)", re.DOTALL)


class ConvAI2Format(DatasetFormat):
    """PersonaChat / ConvAI2 text: ``your persona:`` lines, then tab-separated turn pairs."""

    name = "convai2"
    description = 'PersonaChat/ConvAI2 text: "1 your persona: ..." lines, then "N partner\\tself"'
    suffixes = (".txt",)

    SELF = "self"
    PARTNER = "partner"
    YOUR_PERSONA = "your persona:"
    PARTNER_PERSONA = "partner's persona:"
    SILENCE = "__SILENCE__"
    """The partner turn of a dialogue that the self side starts."""

    def sniff(self, first_line: str) -> bool:
        """A numbered persona line first."""
        match = _NUMBERED.fullmatch(first_line.strip())
        return match is not None and match.group(2).lower().startswith(
            (self.YOUR_PERSONA, self.PARTNER_PERSONA)
        )

    def read(self, path: Path, data: bytes) -> ParsedFile:
        """Read every dialogue.

        Raises:
            DatasetError: The file is not UTF-8.
        """
        parsed = ParsedFile()
        dialogue = _Dialogue()
        for number, raw in enumerate(decode_text(path, data).split("\n"), start=1):
            line = raw.strip()
            if not line:
                continue
            match = _NUMBERED.fullmatch(line)
            if match is None:
                parsed.skipped[SKIP_UNLABELLED] += 1
                continue
            index, rest = match.groups()
            lowered = rest.lower()
            is_persona = lowered.startswith(self.YOUR_PERSONA)
            if index.lstrip("0") == "1" or (is_persona and dialogue.turns):
                dialogue.finish(parsed)
                dialogue = _Dialogue()
            if is_persona:
                dialogue.persona.append(rest[len(self.YOUR_PERSONA) :])
            elif lowered.startswith(self.PARTNER_PERSONA):
                parsed.skipped[SKIP_PARTNER_PERSONA] += 1
            else:
                self._read_turns(rest, number, dialogue, parsed)
        dialogue.finish(parsed)
        return parsed

    def _read_turns(self, rest: str, number: int, dialogue: _Dialogue, parsed: ParsedFile) -> None:
        partner, _, tail = rest.partition("\t")
        mine = normalize_text(tail.split("\t", 1)[0])
        partner = normalize_text(partner)
        if partner == self.SILENCE:
            partner = ""
        if not partner and not mine:
            parsed.skipped[SKIP_EMPTY_TURN] += 1
            return
        if partner:
            dialogue.turns.append(Turn(self.PARTNER, partner, number))
        if mine:
            dialogue.turns.append(Turn(self.SELF, mine, number))
        dialogue.turn_lines += 1


class _Dialogue:
    """The persona sentences and turns of the dialogue being read."""

    def __init__(self) -> None:
        self.persona: list[str] = []
        self.turns: list[Turn] = []
        self.turn_lines = 0

    def finish(self, parsed: ParsedFile) -> None:
        persona = normalize_text(" ".join(self.persona))
        if not persona:
            if self.turn_lines:
                parsed.skipped[SKIP_NO_PERSONA] += self.turn_lines
            return
        parsed.records.extend(dialogue_records(self.turns, {ConvAI2Format.SELF: persona}))
