"""The demo persona dataset: synthetic personas in five archetypes, deterministic by seed.

Each persona is a few first-person trait sentences: three or four from its archetype's pool
and one generic one (job, pet, family, city), so personas of one archetype share a theme but
differ. Each also gets a speaking style of its own. Its replies answer a short conversation,
mention one of its traits and are rendered in its style, so a fine-tuned model can learn both
what a persona talks about and how it talks.

The archetypes have unequal sizes (16:28:40:44:72 of 200) and far-apart themes, so clustering
the persona texts' embeddings finds them again, with one cluster much larger than the rest.

We write this generator ourselves because the service needs a small dataset with a known
cluster structure that builds offline in a second; no published persona corpus has both.
This module imports only the standard library.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from trainers.data import write_jsonl

ARCHETYPE_WEIGHTS = {
    "outdoors": 16,
    "cooking": 28,
    "technology": 40,
    "music": 44,
    "fitness": 72,
}
"""Archetype name -> relative size (of 200 personas)."""

GENERIC_REPLY_SHARE = 0.2
"""Share of replies about the generic trait; the rest are about the archetype traits."""

MIN_PER_ARCHETYPE = 2
"""Every archetype has at least this many personas, whatever ``n_personas``."""


@dataclass(frozen=True)
class Trait:
    """One thing a persona says about itself."""

    sentence: str
    """The first-person sentence that goes into the persona text."""
    topic: str
    """A gerund phrase that replies mention, e.g. ``"hiking mountain trails"``."""


def _traits(*pairs: tuple[str, str]) -> tuple[Trait, ...]:
    return tuple(Trait(sentence, topic) for sentence, topic in pairs)


ARCHETYPE_TRAITS: dict[str, tuple[Trait, ...]] = {
    "outdoors": _traits(
        ("I go hiking on mountain trails every weekend.", "hiking mountain trails"),
        ("I love camping in the wilderness far from any town.", "camping in the wilderness"),
        ("I get up at dawn to watch birds in the forest.", "birdwatching in the forest"),
        ("I paddle my kayak down wild rivers.", "kayaking down wild rivers"),
        ("I have visited more than twenty national parks.", "exploring national parks"),
        ("I enjoy tracking deer and foxes through the woods.", "watching wildlife in the woods"),
        ("I like sleeping in a tent under the stars.", "sleeping under the stars"),
        ("I once trekked across the desert with a backpack.", "trekking through the desert"),
        ("I volunteer to plant trees in the forest.", "planting trees in the forest"),
        ("I love the quiet of a misty mountain lake.", "sitting by mountain lakes"),
        ("I collect pinecones and leaves on my nature walks.", "taking long nature walks"),
        ("I know how to build a campfire and read a trail map.", "building campfires"),
    ),
    "cooking": _traits(
        ("I bake sourdough bread in my kitchen every morning.", "baking sourdough bread"),
        ("I make fresh pasta from scratch.", "making fresh pasta"),
        ("I love trying new recipes from old cookbooks.", "trying new recipes"),
        ("I cook spicy curries with lots of spices.", "cooking spicy curries"),
        ("I ferment my own kimchi and pickles.", "fermenting kimchi and pickles"),
        ("I host dinner parties and cook a five course meal.", "hosting dinner parties"),
        ("I bake chocolate cakes and cookies for my friends.", "baking chocolate cakes"),
        ("I simmer homemade soup and stew in a big pot.", "simmering homemade soup"),
        (
            "I shop for fresh vegetables and herbs at the farmers market.",
            "cooking with fresh herbs",
        ),
        ("I dream of opening a small restaurant with my own menu.", "planning my restaurant menu"),
        ("I grill steaks and roast vegetables on the barbecue.", "grilling on the barbecue"),
        ("I love tasting food and spices from every cuisine.", "tasting new cuisines"),
    ),
    "technology": _traits(
        ("I build my own gaming computers from parts.", "building gaming computers"),
        ("I write software in Python and Rust.", "programming in Python"),
        ("I contribute code to open source projects on GitHub.", "writing open source code"),
        ("I repair broken laptops and smartphones.", "repairing broken laptops"),
        ("I read about artificial intelligence and machine learning.", "studying machine learning"),
        ("I run Linux servers and a home network in my apartment.", "tinkering with Linux servers"),
        ("I program small robots with microcontrollers.", "programming robots"),
        ("I design mobile apps and websites.", "designing mobile apps"),
        ("I follow computer security news and hacking challenges.", "solving hacking challenges"),
        ("I print gadgets with my 3D printer.", "3D printing gadgets"),
        ("I upgrade my computer hardware every year.", "upgrading computer hardware"),
        ("I automate boring tasks with scripts and code.", "automating tasks with code"),
    ),
    "music": _traits(
        ("I play the acoustic guitar and write my own songs.", "writing songs on my guitar"),
        ("I sing in a choir at the concert hall.", "singing in the choir"),
        ("I act in community theater plays and musicals.", "acting in theater plays"),
        ("I have played the piano since I was six.", "playing the piano"),
        ("I play drums in a rock band.", "drumming in my band"),
        ("I go to live concerts and music festivals.", "going to live concerts"),
        ("I collect vinyl records of jazz and classical music.", "collecting vinyl records"),
        ("I practice the violin for an orchestra.", "practicing the violin"),
        ("I compose melodies and music for short films.", "composing melodies"),
        ("I take singing lessons to train my voice.", "training my singing voice"),
        ("I perform on stage at open mic nights.", "performing at open mic nights"),
        ("I listen to opera and symphonies every evening.", "listening to symphonies"),
    ),
    "fitness": _traits(
        ("I lift weights at the gym five days a week.", "lifting weights at the gym"),
        ("I train for marathons and run every morning.", "training for marathons"),
        ("I play basketball with my team every week.", "playing basketball"),
        ("I swim laps in the pool before work.", "swimming laps"),
        ("I do push ups, squats and sit ups every day.", "doing my daily workout"),
        ("I coach a youth soccer team.", "coaching soccer"),
        ("I follow every football game and match of the season.", "watching football games"),
        ("I train at a boxing gym.", "training at the boxing gym"),
        ("I track my workouts, reps and personal records.", "tracking my workouts"),
        ("I compete in triathlons and sports races.", "racing in triathlons"),
        ("I play tennis matches at my sports club.", "playing tennis matches"),
        ("I stretch and do exercises to stay strong and fit.", "staying fit and strong"),
    ),
}
"""Each archetype's trait pool; a persona draws three or four of them."""

GENERIC_TRAITS: tuple[Trait, ...] = _traits(
    ("I work as an accountant.", "balancing accounts at work"),
    ("I work as a nurse at night.", "working night shifts at the hospital"),
    ("I am a librarian.", "helping readers at the library"),
    ("I drive a city bus for a living.", "driving my bus route"),
    ("I am a high school teacher.", "teaching my students"),
    ("I work in a bank.", "working at the bank"),
    ("I have a cat named Milo.", "playing with my cat Milo"),
    ("I have a dog named Biscuit.", "walking my dog Biscuit"),
    ("I have two parrots.", "teaching my parrots new words"),
    ("I have three older brothers.", "visiting my brothers"),
    ("I have a little daughter.", "spending time with my daughter"),
    ("I recently got married.", "enjoying married life"),
    ("I live in Chicago.", "exploring Chicago"),
    ("I grew up in a small town.", "visiting my small hometown"),
    ("I live in an old apartment by the river.", "fixing up my apartment"),
    ("I moved to Canada last year.", "settling in Canada"),
    ("I am a college student.", "studying for my college classes"),
    ("I am retired.", "enjoying my retirement"),
    ("I speak three languages.", "practicing my languages"),
    ("I drive an old red truck.", "fixing my old red truck"),
)
"""Traits that say nothing about the archetype; each persona has one."""


@dataclass(frozen=True)
class _Question:
    text: str
    answers: tuple[str, ...]
    """Templates with ``{topic}``."""


_FREE_TIME = (
    "Most weekends are all about {topic} for me.",
    "Whenever I get a free day, I spend it {topic}.",
    "My free time mostly goes to {topic}, and I never get tired of it.",
)
_ABOUT = (
    "The main thing to know about me is that I care a lot about {topic}.",
    "I'm the kind of person who gets really excited about {topic}.",
    "People who know me know I never stop talking about {topic}.",
)
_RECENT = (
    "Lately I've been putting a lot of time into {topic}.",
    "This week was mostly {topic}, and it was great.",
    "I've been {topic} a lot recently, and it feels good.",
)
_ADVICE = (
    "You should give {topic} a try, it changed my life.",
    "I'd recommend {topic}, it never gets old for me.",
    "Try {topic}, it's what keeps me happy and busy.",
)
_FAVORITE = (
    "Honestly, nothing relaxes me more than {topic}.",
    "The best part of my day is {topic}.",
    "I could talk about {topic} for hours.",
)
_TODAY = (
    "Pretty good, I just spent the morning {topic}.",
    "I'm doing well, I was just thinking about {topic}.",
    "Not bad at all, I have been {topic} since this morning.",
)
_FUTURE = (
    "I'm looking forward to {topic} again very soon.",
    "Tomorrow I plan to spend the whole day {topic}.",
    "Next on my list is {topic}, I can't wait.",
)

QUESTIONS: tuple[_Question, ...] = (
    _Question("What do you do on weekends?", _FREE_TIME),
    _Question("What do you do for fun?", _FREE_TIME),
    _Question("How do you usually spend your free time?", _FREE_TIME),
    _Question("Do you have any hobbies?", _FREE_TIME),
    _Question("Tell me about yourself.", _ABOUT),
    _Question("What are you passionate about?", _ABOUT),
    _Question("What should I know about you?", _ABOUT),
    _Question("What makes you happy?", _ABOUT),
    _Question("What have you been up to lately?", _RECENT),
    _Question("How was your week?", _RECENT),
    _Question("Did you do anything fun recently?", _RECENT),
    _Question("What's new with you?", _RECENT),
    _Question("I'm looking for a new hobby. Any ideas?", _ADVICE),
    _Question("What would you recommend I try?", _ADVICE),
    _Question("I'm bored. What should I do?", _ADVICE),
    _Question("What's your favorite way to relax?", _FAVORITE),
    _Question("What's the best part of your day?", _FAVORITE),
    _Question("What could you talk about for hours?", _FAVORITE),
    _Question("How are you today?", _TODAY),
    _Question("How's it going?", _TODAY),
    _Question("What did you do this morning?", _TODAY),
    _Question("What are you looking forward to?", _FUTURE),
    _Question("Any plans for tomorrow?", _FUTURE),
    _Question("If you had a free day, what would you do?", _FUTURE),
)
"""The partner's questions (the last context turn), each with fitting reply templates."""

GREETINGS = (
    "Hi there!",
    "Hello, nice to meet you.",
    "Hey, how's your day?",
    "Good morning!",
    "Hi, I'm new here.",
    "Hey! Long time no see.",
)
"""Partner openers before the question in longer contexts."""

_SELF_GREETINGS = (
    "Hi, nice to meet you too.",
    "Hello, I'm doing fine, thanks.",
    "Hey, good to see you.",
    "Hi, thanks for saying hello.",
)
"""The persona's own earlier turn in three-turn contexts (rendered in its style)."""

STYLES = (
    "enthusiastic",
    "terse",
    "formal",
    "casual",
    "inquisitive",
    "catchphrase",
    "storyteller",
    "hesitant",
)
"""Speaking styles; each persona has one."""

CATCHPHRASES = (
    "Stay curious, my friend!",
    "That's how the cookie crumbles.",
    "Onward and upward!",
    "Life is good, folks.",
    "Keep it simple, keep it fun.",
    "You only live once!",
    "Every day is a good day.",
    "No rain, no rainbows.",
    "Slow and steady wins the race.",
    "Make it count!",
)
"""Catchphrases for personas of the ``catchphrase`` style (one each, chosen per persona)."""

_CONTRACTIONS = {
    "I'm ": "I am ",
    "I've ": "I have ",
    "I'd ": "I would ",
    "it's ": "it is ",
    "can't ": "cannot ",
    "What's ": "What is ",
    "don't ": "do not ",
}


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
    n_personas: int = 200, examples_per_persona: int = 40, *, seed: int = 0
) -> list[dict[str, object]]:
    """Generate the demo dataset's records.

    Args:
        n_personas: How many personas (at least 10, two per archetype).
        examples_per_persona: Replies per persona (at least 1).
        seed: Same seed, same records; another seed gives other personas and replies.

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
    taken: list[frozenset[Trait]] = []
    records: list[dict[str, object]] = []
    for index, archetype in enumerate(archetypes):
        rng = random.Random(f"persona:{seed}:{index}")
        persona = _draw_persona(rng, archetype, taken)
        persona_id = f"p{index:0{width}d}"
        for _ in range(examples_per_persona):
            context, reply = _draw_example(rng, persona)
            records.append(
                {
                    "persona_id": persona_id,
                    "persona": persona.text,
                    "context": context,
                    "reply": reply,
                }
            )
    return records


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


def _draw_example(rng: random.Random, persona: _Persona) -> tuple[list[str], str]:
    """One context (1-3 turns, the partner's question last) and the persona's reply."""
    question = rng.choice(QUESTIONS)
    n_turns = rng.choice((1, 1, 2, 3))
    if n_turns == 1:
        context = [question.text]
    elif n_turns == 2:
        # The persona spoke first, then the partner asks.
        context = [_render(rng, persona, rng.choice(_SELF_GREETINGS), topic=None), question.text]
    else:
        context = [
            rng.choice(GREETINGS),
            _render(rng, persona, rng.choice(_SELF_GREETINGS), topic=None),
            question.text,
        ]
    generic = rng.random() < GENERIC_REPLY_SHARE
    trait = persona.traits[-1] if generic else rng.choice(persona.traits[:-1])
    core = rng.choice(question.answers).format(topic=trait.topic)
    return context, _render(rng, persona, core, topic=trait.topic)


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
        for short, full in _CONTRACTIONS.items():
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


def generate_generic_corpus(n_lines: int = 4000, *, seed: int = 0) -> list[str]:
    """Generic chat lines for pretraining a tiny language model on the demo's vocabulary.

    The lines are questions, answers and trait sentences over every archetype's and the
    generic traits' words, with the styles' fillers, but tied to no persona: a model
    pretrained on them can produce the words, not any persona's preferences.

    Args:
        n_lines: How many lines.
        seed: Same seed, same lines.

    Returns:
        ``n_lines`` short lines.

    Raises:
        ValueError: ``n_lines`` is negative.
    """
    if n_lines < 0:
        raise ValueError(f"n_lines={n_lines!r}: expected >= 0")
    rng = random.Random(f"corpus:{seed}")
    traits = [t for pool in ARCHETYPE_TRAITS.values() for t in pool] + list(GENERIC_TRAITS)
    templates = [t for q in QUESTIONS for t in q.answers]
    generic_speaker = _Persona("", (), "terse", "")
    lines: list[str] = []
    while len(lines) < n_lines:
        kind = rng.random()
        trait = rng.choice(traits)
        if kind < 0.25:
            lines.append(rng.choice(QUESTIONS).text)
        elif kind < 0.35:
            lines.append(rng.choice(GREETINGS + _SELF_GREETINGS))
        elif kind < 0.5:
            lines.append(trait.sentence)
        elif kind < 0.9:
            # An answer in a random style: the words of every style, no persona's habits.
            speaker = _Persona("", (), rng.choice(STYLES), rng.choice(CATCHPHRASES))
            core = rng.choice(templates).format(topic=trait.topic)
            lines.append(_render(rng, speaker, core, topic=trait.topic))
        else:
            core = rng.choice(templates).format(topic=trait.topic)
            lines.append(_render(rng, generic_speaker, core, topic=trait.topic))
    return lines


def write_demo_dataset(
    path: str | Path, *, n_personas: int = 200, examples_per_persona: int = 40, seed: int = 0
) -> Path:
    """Generate the demo dataset and write it as JSONL, atomically.

    Args:
        path: The file to write.
        n_personas: As for :func:`generate_personas`.
        examples_per_persona: As for :func:`generate_personas`.
        seed: As for :func:`generate_personas`.

    Returns:
        The path written.
    """
    path = Path(path)
    write_jsonl(path, generate_personas(n_personas, examples_per_persona, seed=seed))
    return path
