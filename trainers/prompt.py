"""The one prompt format that training and evaluation share.

The prompt holds the persona text and the conversation so far, as is usual for persona chat,
so that one cluster adapter can speak for each persona of its cluster.
"""

from __future__ import annotations

PARTNER = "A"
"""Speaker tag of the conversation partner (the last context turn is theirs)."""
SELF = "B"
"""Speaker tag of the persona."""


def build_prompt(persona: str, context: str) -> str:
    """Build the prompt that precedes the persona's reply.

    Args:
        persona: The persona text (a few first-person sentences).
        context: The conversation so far, one turn per line, oldest first. The last turn is
            the partner's; earlier turns alternate back from it. May be empty.

    Returns:
        The prompt, ending with the persona's speaker tag and a colon; the reply follows
        after one space.
    """
    turns = [line.strip() for line in context.splitlines() if line.strip()]
    lines = [f"Persona: {' '.join(persona.split())}"]
    for back, turn in enumerate(reversed(turns)):
        speaker = PARTNER if back % 2 == 0 else SELF
        lines.insert(1, f"{speaker}: {turn}")
    lines.append(f"{SELF}:")
    return "\n".join(lines)


def reply_target(reply: str) -> str:
    """The text the model learns to produce after the prompt (one leading space)."""
    return " " + " ".join(reply.split())
