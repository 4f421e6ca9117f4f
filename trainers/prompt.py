"""The one prompt format that training and evaluation share.

The prompt holds the persona text and the conversation so far, as is usual for persona chat,
so that one cluster adapter can speak for each persona of its cluster. A prompt over a token
limit is fitted by :func:`fit_prompt`, for training and evaluation alike: the persona stays
whole and the oldest context turns go first (cutting from the left, as tokenizers do, would
lose the persona first: 58% of Synthetic-Persona-Chat's training examples at 256 tokens).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PARTNER = "A"
"""Speaker tag of the conversation partner (the last context turn is theirs)."""
SELF = "B"
"""Speaker tag of the persona."""
PERSONA_TAG = "Persona:"
"""Start of the prompt's first line, which holds the persona text."""


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
    lines = [f"{PERSONA_TAG} {' '.join(persona.split())}"]
    for back, turn in enumerate(reversed(turns)):
        speaker = PARTNER if back % 2 == 0 else SELF
        lines.insert(1, f"{speaker}: {turn}")
    lines.append(f"{SELF}:")
    return "\n".join(lines)


def reply_target(reply: str) -> str:
    """The text the model learns to produce after the prompt (one leading space)."""
    return " " + " ".join(reply.split())


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt fitted into a token limit by :func:`fit_prompt`."""

    text: str
    """The prompt as kept: the persona line, the newest context turns that fit, the tag."""
    ids: tuple[int, ...]
    """``text`` tokenized as the model sees it (special tokens included)."""
    dropped_turns: int
    """Context turns left out, oldest first."""
    persona_truncated: bool
    """True when the persona line alone was over the limit and its end was cut."""

    @property
    def lost_context(self) -> bool:
        """True when anything of the prompt was left out."""
        return self.dropped_turns > 0 or self.persona_truncated


@dataclass(frozen=True)
class ContextLoss:
    """How many examples lost part of their prompt to a token limit."""

    examples: int
    """Examples fitted."""
    lost_context: int
    """Examples that lost context turns or part of the persona."""
    persona_cut: int
    """Examples whose persona line alone was over the limit (it was cut, all turns dropped)."""
    max_tokens: int
    """The token limit: of the prompt in evaluation, of prompt and reply in training."""

    @classmethod
    def of(cls, fitted: Sequence[FittedPrompt], max_tokens: int) -> ContextLoss:
        """Count the fitted prompts that lost context."""
        return cls(
            examples=len(fitted),
            lost_context=sum(f.lost_context for f in fitted),
            persona_cut=sum(f.persona_truncated for f in fitted),
            max_tokens=max_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.lost_context} of {self.examples} examples lost context to the limit of "
            f"{self.max_tokens} tokens ({self.persona_cut} with the persona cut)"
        )


def _prompt_lines(prompt: str) -> tuple[str, list[str], str]:
    """Split a :func:`build_prompt` prompt into its persona line, turn lines and tag line."""
    lines = prompt.split("\n")
    if len(lines) < 2 or not lines[0].startswith(PERSONA_TAG) or lines[-1] != f"{SELF}:":
        raise ValueError(
            f"not a prompt of build_prompt: {prompt[:60]!r}; expected a first line "
            f"starting with {PERSONA_TAG!r} and a last line {SELF + ':'!r}"
        )
    return lines[0], lines[1:-1], lines[-1]


def fit_prompt(
    tokenizer: Any,
    prompt: str,
    max_tokens: int,
    *,
    ids: Sequence[int] | None = None,
    chat: bool = False,
) -> FittedPrompt:
    """Fit a prompt into ``max_tokens`` tokens: the persona stays whole, old turns go first.

    Training and evaluation both fit their prompts here, so a model is evaluated on the
    prompts it was trained on. The persona line is kept whole whatever the limit, unless it
    alone (with the speaker tag) is over the limit: then its end is cut and every turn is
    dropped, which :attr:`FittedPrompt.persona_truncated` says. Otherwise the newest context
    turns that fit are kept whole and the older ones are dropped.

    Args:
        tokenizer: The model's tokenizer (special tokens count against the limit).
        prompt: A prompt of :func:`build_prompt` (any text, if it is within the limit).
        max_tokens: The most tokens the prompt may have.
        ids: ``tokenizer(prompt)["input_ids"]``, where the caller has it already.
        chat: Render the prompt with the tokenizer's chat template (:func:`chat_prompt`),
            fitted the same way: the persona stays, the oldest turns go first.

    Raises:
        ValueError: If ``prompt`` is over the limit and not in the format of
            :func:`build_prompt`, or
            ``max_tokens`` cannot hold even the speaker tag.
    """
    if chat:
        return _fit_chat(tokenizer, prompt, max_tokens)
    full = list(tokenizer(prompt, verbose=False)["input_ids"] if ids is None else ids)
    if len(full) <= max_tokens:
        return FittedPrompt(prompt, tuple(full), 0, False)
    persona, turns, tag = _prompt_lines(prompt)
    fixed = len(tokenizer(f"{persona}\n{tag}", verbose=False)["input_ids"])
    if fixed > max_tokens:
        return _cut_persona(tokenizer, persona, tag, len(turns), max_tokens)
    lines = [f"\n{turn}" for turn in turns]
    costs = tokenizer(lines, add_special_tokens=False, verbose=False)["input_ids"] if lines else []
    room, start = max_tokens - fixed, len(turns)
    while start > 0 and len(costs[start - 1]) <= room:
        room -= len(costs[start - 1])
        start -= 1
    while True:  # per-line counts can differ from the joined text's by a merge: check it
        text = "\n".join([persona, *turns[start:], tag])
        kept = tokenizer(text, verbose=False)["input_ids"]
        if len(kept) <= max_tokens or start == len(turns):
            return FittedPrompt(text, tuple(kept), start, False)
        start += 1


def _cut_persona(
    tokenizer: Any, persona: str, tag: str, n_turns: int, max_tokens: int
) -> FittedPrompt:
    """The persona line's first tokens and the tag, within ``max_tokens`` (no turns)."""
    persona_ids = tokenizer(persona, add_special_tokens=False, verbose=False)["input_ids"]
    keep = max_tokens - (len(tokenizer(f"\n{tag}", verbose=False)["input_ids"]))
    while keep > 0:
        text = f"{tokenizer.decode(persona_ids[:keep])}\n{tag}"
        ids = tokenizer(text, verbose=False)["input_ids"]
        if len(ids) <= max_tokens:
            return FittedPrompt(text, tuple(ids), n_turns, True)
        keep -= 1
    raise ValueError(
        f"max_tokens={max_tokens!r} cannot hold a prompt: expected more tokens than the "
        f"speaker tag {tag!r} takes"
    )


def fit_prompts(
    tokenizer: Any, prompts: Sequence[str], max_tokens: int, *, chat: bool = False
) -> list[FittedPrompt]:
    """:func:`fit_prompt` for many prompts, tokenized in one batch."""
    if not prompts:
        return []
    if chat:
        return [fit_prompt(tokenizer, prompt, max_tokens, chat=True) for prompt in prompts]
    batch = tokenizer(list(prompts), verbose=False)["input_ids"]
    return [
        fit_prompt(tokenizer, prompt, max_tokens, ids=ids)
        for prompt, ids in zip(prompts, batch, strict=True)
    ]


def chat_messages(prompt: str, *, system: bool = True) -> list[dict[str, str]]:
    """A :func:`build_prompt` prompt as chat messages: the persona as the system message,
    the partner's turns as ``user`` and the persona's as ``assistant`` messages.

    Args:
        prompt: A prompt of :func:`build_prompt`.
        system: False puts the persona at the start of the first message instead, for
            templates without a system role.
    """
    persona, turns, _tag = _prompt_lines(prompt)
    instruction = f"You are this person: {persona.removeprefix(PERSONA_TAG).strip()}"
    messages = [
        {"role": "user" if turn.startswith(f"{PARTNER}:") else "assistant", "content": text}
        for turn in turns
        for text in [turn.split(":", 1)[1].strip()]
    ]
    if system:
        return [{"role": "system", "content": instruction}, *messages]
    if messages and messages[0]["role"] == "user":
        messages[0] = {"role": "user", "content": f"{instruction}\n\n{messages[0]['content']}"}
        return messages
    return [{"role": "user", "content": instruction}, *messages]


def chat_prompt(tokenizer: Any, prompt: str) -> str:
    """A :func:`build_prompt` prompt rendered with the tokenizer's chat template, ending
    with the assistant's generation prompt (the reply follows it directly).

    Raises:
        ValueError: If the tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "prompt_format='chat' needs a tokenizer with a chat template: expected an "
            "instruct model, or prompt_format='plain'"
        )
    try:
        text = tokenizer.apply_chat_template(
            chat_messages(prompt), tokenize=False, add_generation_prompt=True
        )
    except Exception:  # jinja's TemplateError: a template without a system role, say
        text = tokenizer.apply_chat_template(
            chat_messages(prompt, system=False), tokenize=False, add_generation_prompt=True
        )
    return str(text)


def _fit_chat(tokenizer: Any, prompt: str, max_tokens: int) -> FittedPrompt:
    """:func:`fit_prompt` for the chat format: drop the oldest turns until the rendered
    chat fits; a persona alone over the limit keeps its first words."""
    persona, turns, tag = _prompt_lines(prompt)
    for start in range(len(turns) + 1):
        text = chat_prompt(tokenizer, "\n".join([persona, *turns[start:], tag]))
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) <= max_tokens:
            return FittedPrompt(text, tuple(ids), start, False)
    words = persona.split()
    while len(words) > 1:
        words = words[: len(words) // 2]
        text = chat_prompt(tokenizer, "\n".join([" ".join(words), tag]))
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) <= max_tokens:
            return FittedPrompt(text, tuple(ids), len(turns), True)
    raise ValueError(
        f"max_tokens={max_tokens!r} cannot hold a chat prompt: expected more tokens than "
        "the chat template's own take"
    )
