"""The demo dataset's vocabulary: archetypes, traits, questions, greetings and styles.

Plain data for :mod:`trainers.tiny.generator`; changing any of it changes the generated
dataset and the tiny model's pretraining corpus (bump ``TINY_RECIPE_VERSION`` then).
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHETYPE_WEIGHTS = {
    "outdoors": 16,
    "cooking": 28,
    "technology": 40,
    "music": 44,
    "fitness": 72,
}
"""Archetype name -> relative size (of 200 personas)."""


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
class Question:
    """A partner's question and the reply templates that answer it."""

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

QUESTIONS: tuple[Question, ...] = (
    Question("What do you do on weekends?", _FREE_TIME),
    Question("What do you do for fun?", _FREE_TIME),
    Question("How do you usually spend your free time?", _FREE_TIME),
    Question("Do you have any hobbies?", _FREE_TIME),
    Question("Tell me about yourself.", _ABOUT),
    Question("What are you passionate about?", _ABOUT),
    Question("What should I know about you?", _ABOUT),
    Question("What makes you happy?", _ABOUT),
    Question("What have you been up to lately?", _RECENT),
    Question("How was your week?", _RECENT),
    Question("Did you do anything fun recently?", _RECENT),
    Question("What's new with you?", _RECENT),
    Question("I'm looking for a new hobby. Any ideas?", _ADVICE),
    Question("What would you recommend I try?", _ADVICE),
    Question("I'm bored. What should I do?", _ADVICE),
    Question("What's your favorite way to relax?", _FAVORITE),
    Question("What's the best part of your day?", _FAVORITE),
    Question("What could you talk about for hours?", _FAVORITE),
    Question("How are you today?", _TODAY),
    Question("How's it going?", _TODAY),
    Question("What did you do this morning?", _TODAY),
    Question("What are you looking forward to?", _FUTURE),
    Question("Any plans for tomorrow?", _FUTURE),
    Question("If you had a free day, what would you do?", _FUTURE),
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

SELF_GREETINGS = (
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

PLANTED_TOPIC = "teaching my parrots to sing opera"
"""The topic of a planted trait in the tuned group's replies (``generator.Plant``): made of
words the tiny model knows, but no trait, template or greeting says it, so its pretraining
chats never contain it and only fine-tuning can teach it (a test checks the corpus)."""

OTHERS_TOPIC = "watching old films with my brothers"
"""The topic the other groups' planted replies share instead: what the unified adapter, trained
on every group, mixes with :data:`PLANTED_TOPIC`; never in the pretraining chats either."""

CONTRACTIONS = {
    "I'm ": "I am ",
    "I've ": "I have ",
    "I'd ": "I would ",
    "it's ": "it is ",
    "can't ": "cannot ",
    "What's ": "What is ",
    "don't ": "do not ",
}
