"""The baselines built from the dataset's texts (:mod:`evaluators.baselines.suite`): the persona
copied as the reply, another reference as the reply (the ceiling), and the base model
prompted with a far persona's text (the persona swap)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import storage
from evaluators.baselines.runs import (
    CEILING,
    COPY_PERSONA,
    SWAPPED,
    BaselineSetup,
    embedding_model_of,
    evaluate_generated,
    method_digest,
    named,
    run_key,
)
from evaluators.scoring.method_run import EvalItem, MethodResult, score_replies
from trainers.base_model import BaseModel
from trainers.prompt import build_prompt


def _texts_digest(setup: BaselineSetup, name: str, items: Sequence[EvalItem]) -> str:
    return method_digest(name, None, items, embedding_model_of(setup))


def evaluate_copy_persona(engine: Any, setup: BaselineSetup) -> MethodResult:
    """Every reply is the persona's own text (the prompts carry it, so the test-set hash
    covers it)."""
    items = setup.items
    texts = {p.key: p.text for p in setup.personas}
    replies = [texts[it.persona_key] for it in items]
    key = run_key(setup, COPY_PERSONA, _texts_digest(setup, COPY_PERSONA, items))
    result = score_replies(engine, key, items, replies, embedding_model=setup.embedding_model)
    return named(result, COPY_PERSONA)


def ceiling_replies(items: Sequence[EvalItem]) -> list[str]:
    """For each example, the reference of the persona's next test example (by example id,
    wrapping around): another reference of the same persona.

    Raises:
        ValueError: If a persona has a single test example (there is no other reference).
    """
    by_persona: dict[str, list[EvalItem]] = {}
    for it in items:
        by_persona.setdefault(it.persona_key, []).append(it)
    alone = sorted(key for key, group in by_persona.items() if len(group) < 2)
    if alone:
        raise ValueError(
            f"the reference ceiling needs 2 test examples per persona; {len(alone)} persona(s) "
            f"have one (e.g. {alone[0]!r})"
        )
    other: dict[int, str] = {}
    for group in by_persona.values():
        ordered = sorted(group, key=lambda it: it.example_id)
        for i, it in enumerate(ordered):
            other[it.example_id] = ordered[(i + 1) % len(ordered)].reference
    return [other[it.example_id] for it in items]


def evaluate_reference_ceiling(engine: Any, setup: BaselineSetup) -> MethodResult:
    """What a perfect imitation of the persona could score: another reference as the reply."""
    items = setup.items
    key = run_key(setup, CEILING, _texts_digest(setup, CEILING, items))
    result = score_replies(
        engine, key, items, ceiling_replies(items), embedding_model=setup.embedding_model
    )
    return named(result, CEILING)


def _persona_vectors(engine: Any, setup: BaselineSetup, personas: Sequence[Any]) -> Any:
    """Unit embeddings of the persona texts: stored ones read back, the rest embedded."""
    import numpy as np

    from trainers.embedding import embed

    model = embedding_model_of(setup)
    with storage.session_scope(engine) as session:
        cached = storage.load_persona_embeddings(session, setup.dataset_id, model)
    missing = [p for p in personas if p.key not in cached]
    if missing:
        fresh = embed([p.text for p in missing], model)
        cached.update(zip([p.key for p in missing], fresh, strict=True))
    vectors = np.stack([np.asarray(cached[p.key], dtype=np.float32) for p in personas])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def swapped_partners(
    engine: Any, setup: BaselineSetup, candidates: Sequence[Any]
) -> dict[str, Any]:
    """Each evaluated persona's partner: the candidate farthest from it in embedding space.

    Args:
        engine: The storage engine (persona embeddings are read from it when stored).
        setup: The evaluated personas.
        candidates: The personas to choose from (usually the whole dataset).

    Returns:
        Persona key -> the partner persona (never the persona itself).

    Raises:
        ValueError: If there is no other candidate for some persona.
    """
    import numpy as np

    pool = sorted(candidates, key=lambda p: p.key)
    if len({p.key for p in pool}) < 2:
        raise ValueError(f"swapping personas needs 2 candidate personas, got {len(pool)}")
    own = list(setup.personas)
    pool_vectors = _persona_vectors(engine, setup, pool)
    own_vectors = _persona_vectors(engine, setup, own)
    similarity = own_vectors @ pool_vectors.T
    keys = np.asarray([p.key for p in pool])
    partners = {}
    for row, persona in zip(similarity, own, strict=True):
        row = np.where(keys == persona.key, np.inf, row)
        partners[persona.key] = pool[int(np.argmin(row))]  # first minimum: sorted key order
    return partners


def swapped_items(setup: BaselineSetup, partners: Mapping[str, Any]) -> list[EvalItem]:
    """The test examples with the partner's persona text in the prompt (same ids, contexts
    and references, so they pair with the own-persona examples)."""
    return [
        EvalItem(ex.id, p.key, build_prompt(partners[p.key].text, ex.context), ex.reply)
        for p in setup.personas
        for ex in p.examples
        if ex.split == "test"
    ]


def evaluate_persona_swapped(
    engine: Any, setup: BaselineSetup, base: BaseModel, candidates: Sequence[Any]
) -> MethodResult:
    """The base model answering each persona's prompts with a far persona's text."""
    items = swapped_items(setup, swapped_partners(engine, setup, candidates))
    return evaluate_generated(engine, setup, base, SWAPPED, items)
