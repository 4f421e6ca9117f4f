"""The prompt format that training and evaluation share."""

from __future__ import annotations

import itertools

import pytest

from trainers.prompt import PARTNER, SELF, build_prompt, reply_target


def test_prompt_puts_persona_first_and_alternates_speakers() -> None:
    prompt = build_prompt(
        "I love   hiking.\nI have a cat.", "Hi!\nHello there.\n\nWhat do you do on weekends?"
    )
    lines = prompt.split("\n")
    assert lines[0] == "Persona: I love hiking. I have a cat."
    assert lines[1:] == [
        f"{PARTNER}: Hi!",
        f"{SELF}: Hello there.",
        f"{PARTNER}: What do you do on weekends?",
        f"{SELF}:",
    ]


@pytest.mark.parametrize("n_turns", [1, 2, 3, 4])
def test_last_context_turn_is_always_the_partner(n_turns: int) -> None:
    context = "\n".join(f"turn {i}" for i in range(n_turns))
    lines = build_prompt("I am me.", context).split("\n")
    assert lines[0].startswith("Persona: ")
    turns = lines[1:-1]
    assert len(turns) == n_turns
    assert turns[-1] == f"{PARTNER}: turn {n_turns - 1}"
    speakers = [t.split(":", 1)[0] for t in turns]
    assert all(a != b for a, b in itertools.pairwise(speakers))
    assert lines[-1] == "B:"


def test_prompt_with_empty_context() -> None:
    assert build_prompt("I am me.", "") == "Persona: I am me.\nB:"


def test_reply_target_has_one_leading_space() -> None:
    assert reply_target("  Mostly\nhiking  trails. ") == " Mostly hiking trails."
