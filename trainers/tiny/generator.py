"""The demo persona dataset: synthetic personas in five archetypes, deterministic by seed.

Each persona is a few first-person trait sentences: three or four from its archetype's pool
and one generic one (job, pet, family, city), so personas of one archetype share a theme but
differ. Each also gets a speaking style of its own. Its replies answer a short conversation,
mention one of its traits and are rendered in its style, so a fine-tuned model can learn both
what a persona talks about and how it talks.

The archetypes have unequal sizes (16:28:40:44:72 of 200) and far-apart themes, so clustering
the persona texts' embeddings finds them again, with one cluster much larger than the rest.

A :class:`Plant` plants a trait shared by one archetype's personas (by default the largest,
which becomes the largest cluster, the one a study tunes): a share of their replies is about
:data:`~trainers.tiny.vocabulary.PLANTED_TOPIC` instead of one of their own traits, and the
same share of every other persona's replies about another shared topic,
:data:`~trainers.tiny.vocabulary.OTHERS_TOPIC`. Persona texts stay as they are, so nothing in
the prompt announces either topic and the base model, whose pretraining never saw them, cannot
know them: only fine-tuning can. A cluster adapter learns its group's topic; the unified
adapter, trained on every group, mixes it with the others' (docs/demo.md, "Planted effect").
Everything else is drawn exactly as without a plant, so strength 0 (the negative control)
gives the same records as no plant at all.

We write this generator ourselves because the service needs a small dataset with a known
cluster structure that builds offline in a second; no published persona corpus has both.
This module and its vocabulary import only the standard library.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainers.data import write_jsonl
from trainers.tiny.vocabulary import (
    ARCHETYPE_TRAITS,
    ARCHETYPE_WEIGHTS,
    CATCHPHRASES,
    CONTRACTIONS,
    GENERIC_TRAITS,
    GREETINGS,
    OTHERS_TOPIC,
    PLANTED_TOPIC,
    QUESTIONS,
    SELF_GREETINGS,
    STYLES,
    Trait,
)

_ALL_TRAITS = tuple(t for pool in ARCHETYPE_TRAITS.values() for t in pool) + GENERIC_TRAITS

GENERIC_REPLY_SHARE = 0.2
"""Share of replies about the generic trait; the rest are about the archetype traits."""

MIN_PER_ARCHETYPE = 2
"""Every archetype has at least this many personas, whatever ``n_personas``."""


LARGEST_ARCHETYPE = max(ARCHETYPE_WEIGHTS, key=lambda name: ARCHETYPE_WEIGHTS[name])
"""The archetype with the most personas: it becomes the largest cluster, the one the demo
study tunes (clusters are numbered by size, so with k=5 it is cluster 4)."""


@dataclass(frozen=True)
class Plant:
    """A trait planted in the replies of one archetype's personas, and another in the rest's.

    Each reply of the group's personas is, with probability ``strength``, about
    :data:`~trainers.tiny.vocabulary.PLANTED_TOPIC` instead of one of the persona's own traits
    (same question, template and style; drawn from a random stream of its own, so the rest of
    the dataset is the one drawn without a plant); each reply of every other persona, with the
    same probability, about :data:`~trainers.tiny.vocabulary.OTHERS_TOPIC`. Strength 0 plants
    nothing: the negative control.
    """

    strength: float = 0.0
    """Share of the group's replies about the planted topic, in [0, 1]; 0 plants nothing."""
    group: str = LARGEST_ARCHETYPE
    """The archetype whose personas share the planted trait (default: the largest)."""

    def __post_init__(self) -> None:
        strength = self.strength
        if isinstance(strength, bool) or not isinstance(strength, int | float):
            raise ValueError(f"invalid strength={strength!r}: expected a number in [0, 1]")
        if not 0 <= strength <= 1:
            raise ValueError(f"invalid strength={strength!r}: expected a number in [0, 1]")
        if self.group not in ARCHETYPE_WEIGHTS:
            raise ValueError(
                f"invalid group={self.group!r}: expected one of {sorted(ARCHETYPE_WEIGHTS)}"
            )

    @property
    def topic(self) -> str:
        """What the group's planted replies talk about."""
        return PLANTED_TOPIC

    @property
    def others_topic(self) -> str:
        """What the other personas' planted replies talk about."""
        return OTHERS_TOPIC

    def describe(self) -> str:
        """One line for a user: what is planted where, or that nothing is."""
        if not self.strength:
            return "none (negative control)"
        return (
            f"{self.strength:.0%} of the {self.group} personas' replies are about "
            f"{self.topic!r}, {self.strength:.0%} of the others' about {self.others_topic!r} "
            "(topics the tiny model's pretraining never saw)"
        )


@dataclass(frozen=True)
class _Persona:
    archetype: str
    traits: tuple[Trait, ...]
    """Archetype traits first, the generic trait last."""
    style: str
    catchphrase: str

    @property
    def text(self) -> str:
        return " ".join(trait.sentence for trait in self.traits)


def archetype_sizes(n_personas: int) -> dict[str, int]:
    """How many personas each archetype gets: 16:28:40:44:72 scaled, each at least 2.

    Args:
        n_personas: The total, at least ``2 * len(ARCHETYPE_WEIGHTS)``.

    Returns:
        Archetype name -> count, summing to exactly ``n_personas``.

    Raises:
        ValueError: ``n_personas`` is too small to give every archetype two personas.
    """
    minimum = MIN_PER_ARCHETYPE * len(ARCHETYPE_WEIGHTS)
    if n_personas < minimum:
        raise ValueError(f"n_personas={n_personas!r} is too small: expected >= {minimum}")
    total = sum(ARCHETYPE_WEIGHTS.values())
    exact = {name: n_personas * w / total for name, w in ARCHETYPE_WEIGHTS.items()}
    sizes = {name: max(MIN_PER_ARCHETYPE, int(value)) for name, value in exact.items()}
    # Largest remainder: hand out what rounding down left, biggest fractions first ...
    by_fraction = sorted(exact, key=lambda name: exact[name] - sizes[name], reverse=True)
    for name in by_fraction[: max(0, n_personas - sum(sizes.values()))]:
        sizes[name] += 1
    # ... or, where the minimum pushed the sum over, take back from the largest.
    while sum(sizes.values()) > n_personas:
        largest = max(sizes, key=lambda name: sizes[name])
        sizes[largest] -= 1
    return sizes


def persona_archetypes(n_personas: int = 200, *, seed: int = 0) -> list[str]:
    """The archetype of each generated persona, in persona order.

    Args:
        n_personas: As for :func:`generate_personas`.
        seed: As for :func:`generate_personas`.

    Returns:
        One archetype name per persona (``p000`` first).
    """
    labels = [name for name, size in archetype_sizes(n_personas).items() for _ in range(size)]
    random.Random(f"archetypes:{seed}").shuffle(labels)
    return labels


def generate_personas(
    n_personas: int = 200,
    examples_per_persona: int = 40,
    *,
    seed: int = 0,
    exclude: Sequence[str] = (),
    plant: Plant | None = None,
) -> list[dict[str, object]]:
    """Generate the demo dataset's records.

    Args:
        n_personas: How many personas (at least 10, two per archetype).
        examples_per_persona: Replies per persona (at least 1).
        seed: Same seed, same records; another seed gives other personas and replies.
        exclude: Persona texts (of another dataset) to keep apart from: no persona's trait
            set equals, contains or is contained in one of theirs, as within a dataset.
        plant: A trait planted in one archetype's replies; None or strength 0: none, and
            the records are the same.

    Returns:
        JSONL records with keys ``persona_id``, ``persona``, ``context`` (a list of 1-3
        turns) and ``reply``, persona by persona. No ``split``: the loader splits.

    Raises:
        ValueError: A count is out of range.
    """
    if examples_per_persona < 1:
        raise ValueError(f"examples_per_persona={examples_per_persona!r}: expected >= 1")
    archetypes = persona_archetypes(n_personas, seed=seed)
    width = max(3, len(str(n_personas - 1)))
    taken = [trait_set(text) for text in exclude]
    records: list[dict[str, object]] = []
    for index, archetype in enumerate(archetypes):
        rng = random.Random(f"persona:{seed}:{index}")
        persona = _draw_persona(rng, archetype, taken)
        persona_id = f"p{index:0{width}d}"
        planted = None
        if plant is not None:
            planted = plant.topic if archetype == plant.group else plant.others_topic
        plant_rng = random.Random(f"plant:{seed}:{index}")  # its own stream: rng stays as is
        for _ in range(examples_per_persona):
            topic = None
            if plant is not None and plant_rng.random() < plant.strength:
                topic = planted
            context, reply = _draw_example(rng, persona, planted_topic=topic)
            records.append(
                {
                    "persona_id": persona_id,
                    "persona": persona.text,
                    "context": context,
                    "reply": reply,
                }
            )
    return records


def planted_personas(n_personas: int, *, seed: int = 0, plant: Plant) -> list[str]:
    """The ids of the personas of the plant's group (as :func:`generate_personas` names them),
    whether or not the plant's strength is above 0."""
    width = max(3, len(str(n_personas - 1)))
    return [
        f"p{index:0{width}d}"
        for index, archetype in enumerate(persona_archetypes(n_personas, seed=seed))
        if archetype == plant.group
    ]


def trait_set(persona_text: str) -> frozenset[Trait]:
    """The traits whose sentences a generated persona text is made of."""
    return frozenset(t for t in _ALL_TRAITS if t.sentence in persona_text)


def generate_persona_chats(
    n_personas: int, examples_per_persona: int, *, seed: int, exclude: Sequence[str] = ()
) -> list[tuple[str, str, str]]:
    """Persona chats for pretraining a base model: (persona, context, reply) triples.

    The same generator as the demo dataset's, so the chats teach what a persona line means
    (replies are about its traits) without the demo's personas: give another seed than the
    demo's and its persona texts as ``exclude``.

    Args:
        n_personas: How many personas.
        examples_per_persona: Chats per persona.
        seed: As for :func:`generate_personas`.
        exclude: As for :func:`generate_personas`.

    Returns:
        Persona text, context (turns joined by newlines, oldest first) and reply.
    """
    records = generate_personas(n_personas, examples_per_persona, seed=seed, exclude=exclude)
    return [
        (str(r["persona"]), "\n".join(r["context"]), str(r["reply"]))  # type: ignore[arg-type]
        for r in records
    ]


_MAX_DRAWS = 10_000
"""Draws per persona before giving up on finding a distinct trait set."""


def _draw_persona(rng: random.Random, archetype: str, taken: list[frozenset[Trait]]) -> _Persona:
    """A persona whose traits neither contain nor are contained in an earlier persona's.

    So every persona has a trait that tells it apart from each other one.
    """
    for _ in range(_MAX_DRAWS):
        own = rng.sample(ARCHETYPE_TRAITS[archetype], rng.choice((3, 4)))
        traits = (*own, rng.choice(GENERIC_TRAITS))
        key = frozenset(traits)
        if not any(key <= other or other <= key for other in taken):
            taken.append(key)
            return _Persona(archetype, traits, rng.choice(STYLES), rng.choice(CATCHPHRASES))
    raise ValueError(
        f"archetype {archetype!r} ran out of distinct trait sets after {len(taken)} personas; "
        "expected fewer personas (a few thousand at most)"
    )


def _draw_example(
    rng: random.Random, persona: _Persona, *, planted_topic: str | None = None
) -> tuple[list[str], str]:
    """One context (1-3 turns, the partner's question last) and the persona's reply.

    With ``planted_topic``, the reply is the one drawn without it, about that topic instead of
    the persona's trait; ``rng`` advances exactly as without it.
    """
    question = rng.choice(QUESTIONS)
    n_turns = rng.choice((1, 1, 2, 3))
    if n_turns == 1:
        context = [question.text]
    elif n_turns == 2:
        # The persona spoke first, then the partner asks.
        context = [_render(rng, persona, rng.choice(SELF_GREETINGS), topic=None), question.text]
    else:
        context = [
            rng.choice(GREETINGS),
            _render(rng, persona, rng.choice(SELF_GREETINGS), topic=None),
            question.text,
        ]
    generic = rng.random() < GENERIC_REPLY_SHARE
    trait = persona.traits[-1] if generic else rng.choice(persona.traits[:-1])
    template = rng.choice(question.answers)
    state = rng.getstate()
    reply = _render(rng, persona, template.format(topic=trait.topic), topic=trait.topic)
    if planted_topic is None:
        return context, reply
    twin = random.Random()
    twin.setstate(state)  # the same opener and closer, the planted topic
    return context, _render(
        twin, persona, template.format(topic=planted_topic), topic=planted_topic
    )


def _render(rng: random.Random, persona: _Persona, core: str, *, topic: str | None) -> str:
    """Say ``core`` (one sentence ending in a period) in the persona's style."""
    style = persona.style
    if style == "enthusiastic":
        opener = rng.choice(("Oh, great question!", "Wow!", "Yes!", "Oh, I love this!"))
        return f"{opener} {core[:-1]}! {rng.choice(('Absolutely love it!', 'So much fun!'))}"
    if style == "terse":
        return core
    if style == "formal" and topic is None:
        return f"Good day. {core}"
    if style == "formal":
        for short, full in CONTRACTIONS.items():
            core = core.replace(short, full)
        opener = rng.choice(("Thank you for asking.", "If I may say so,", "Certainly."))
        if opener.endswith(","):
            core = core[0].lower() + core[1:]
        return f"{opener} {core} {rng.choice(('Kind regards.', 'I hope that answers it.'))}"
    if style == "casual":
        opener = rng.choice(("haha", "lol", "tbh", "ngl"))
        closer = rng.choice(("haha", "lol", "haha yeah"))
        return f"{opener} {core[0].lower()}{core[1:-1]} {closer}"
    if style == "inquisitive":
        if topic is None:
            return f"{core} And how are you?"
        if " my " in f" {topic} ":
            back = rng.choice(("What about you?", "How about you?"))
        else:
            back = rng.choice(
                (f"Have you ever tried {topic}?", f"Do you like {topic} too?", "What about you?")
            )
        return f"{core} {back}"
    if style == "catchphrase":
        return f"{core} {persona.catchphrase}"
    if style == "storyteller":
        opener = rng.choice(("Funny story:", "Let me tell you,", "You know what?"))
        if opener.endswith(","):
            core = core[0].lower() + core[1:]
        return f"{opener} {core} {rng.choice(('True story.', 'That is my story.'))}"
    # hesitant
    opener = rng.choice(("Well, I guess", "Hmm, I suppose", "Um, well,"))
    return f"{opener} {core[0].lower()}{core[1:-1]}... if that makes sense."


def write_demo_dataset(
    path: str | Path,
    *,
    n_personas: int = 200,
    examples_per_persona: int = 40,
    seed: int = 0,
    plant: Plant | None = None,
) -> Path:
    """Generate the demo dataset and write it as JSONL, atomically.

    Args:
        path: The file to write.
        n_personas: As for :func:`generate_personas`.
        examples_per_persona: As for :func:`generate_personas`.
        seed: As for :func:`generate_personas`.
        plant: As for :func:`generate_personas`.

    Returns:
        The path written.
    """
    path = Path(path)
    records = generate_personas(n_personas, examples_per_persona, seed=seed, plant=plant)
    write_jsonl(path, records)
    return path
