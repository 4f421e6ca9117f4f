"""Persona embeddings cache: exact round trip, partial hits, one cache per model and dataset."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from storage import (
    Dataset,
    NotFoundError,
    load_persona_embeddings,
    save_dataset,
    save_persona_embeddings,
    session_scope,
)
from storage.models import PersonaEmbedding
from tests.storage_tests.conftest import make_personas

MODEL = "all-MiniLM-L6-v2"


def _vectors(keys: list[str], dim: int = 384, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {key: rng.standard_normal(dim).astype(np.float32) for key in keys}


def test_vectors_round_trip_bit_for_bit(engine: sa.Engine, dataset_id: int) -> None:
    vectors = _vectors(["p000", "p001"])
    # Values that a lossy encoding (text, float64 rounding, native byte order) would change.
    vectors["p002"] = np.array(
        [0.1, -0.0, 1e-45, np.finfo(np.float32).max, np.nan, -np.inf, 1 / 3], dtype=np.float32
    )
    vectors["p001"] = vectors["p001"][:7]  # all vectors of one model have one length
    vectors["p000"] = vectors["p000"][:7]
    with session_scope(engine) as session:
        assert save_persona_embeddings(session, dataset_id, MODEL, vectors) == 3
    with session_scope(engine) as session:
        loaded = load_persona_embeddings(session, dataset_id, MODEL)
    assert sorted(loaded) == ["p000", "p001", "p002"]
    for key, vector in vectors.items():
        assert loaded[key].dtype == np.float32
        assert loaded[key].tobytes() == vector.tobytes()
    loaded["p000"][0] = 5.0  # a writable copy, not a view of the row's bytes


def test_only_stored_personas_come_back(engine: sa.Engine, dataset_id: int) -> None:
    with session_scope(engine) as session:
        assert load_persona_embeddings(session, dataset_id, MODEL) == {}
        save_persona_embeddings(session, dataset_id, MODEL, _vectors(["p001"]))
    with session_scope(engine) as session:
        assert list(load_persona_embeddings(session, dataset_id, MODEL)) == ["p001"]


def test_another_model_is_another_cache(engine: sa.Engine, dataset_id: int) -> None:
    with session_scope(engine) as session:
        save_persona_embeddings(session, dataset_id, MODEL, _vectors(["p000", "p001"]))
        save_persona_embeddings(session, dataset_id, "other-model", _vectors(["p002"], dim=8))
    with session_scope(engine) as session:
        assert sorted(load_persona_embeddings(session, dataset_id, MODEL)) == ["p000", "p001"]
        other = load_persona_embeddings(session, dataset_id, "other-model")
        assert list(other) == ["p002"] and other["p002"].shape == (8,)
        assert load_persona_embeddings(session, dataset_id, "all-MiniLM-L12-v2") == {}


def test_another_dataset_with_the_same_keys_is_another_cache(
    engine: sa.Engine, dataset_id: int
) -> None:
    with session_scope(engine) as session:
        other_id = save_dataset(
            session, name="toy2", sha256="b" * 64, source="toy2.jsonl", personas=make_personas()
        )
        save_persona_embeddings(session, dataset_id, MODEL, _vectors(["p000"]))
    with session_scope(engine) as session:
        assert load_persona_embeddings(session, other_id, MODEL) == {}
        assert list(load_persona_embeddings(session, "toy", MODEL)) == ["p000"]


def test_saving_again_replaces_the_vector(engine: sa.Engine, dataset_id: int) -> None:
    first, second = _vectors(["p000"], seed=1), _vectors(["p000"], seed=2)
    with session_scope(engine) as session:
        save_persona_embeddings(session, "toy", MODEL, first)
    with session_scope(engine) as session:
        save_persona_embeddings(session, "toy", MODEL, second)
    with session_scope(engine) as session:
        loaded = load_persona_embeddings(session, "toy", MODEL)
        n_rows = session.execute(sa.select(sa.func.count()).select_from(PersonaEmbedding))
        assert n_rows.scalar_one() == 1
    assert loaded["p000"].tobytes() == second["p000"].tobytes()


def test_rows_go_with_their_dataset(engine: sa.Engine, dataset_id: int) -> None:
    """Deleting a dataset deletes its personas and, by ON DELETE CASCADE, their vectors."""
    with session_scope(engine) as session:
        save_persona_embeddings(session, dataset_id, MODEL, _vectors(["p000", "p001"]))
    with session_scope(engine) as session:
        session.execute(sa.delete(Dataset).where(Dataset.id == dataset_id))
    with session_scope(engine) as session:
        count = session.execute(sa.select(sa.func.count()).select_from(PersonaEmbedding))
        assert count.scalar_one() == 0


def test_unknown_persona_key_is_named_and_nothing_is_written(
    engine: sa.Engine, dataset_id: int
) -> None:
    vectors = _vectors(["p000", "nobody"])
    with (
        pytest.raises(NotFoundError, match=r"1 persona keys are not in dataset .*'nobody'"),
        session_scope(engine) as session,
    ):
        save_persona_embeddings(session, dataset_id, MODEL, vectors)
    with session_scope(engine) as session:
        assert load_persona_embeddings(session, dataset_id, MODEL) == {}


def test_unknown_dataset_name_raises(engine: sa.Engine) -> None:
    with session_scope(engine) as session, pytest.raises(NotFoundError, match="'missing'"):
        load_persona_embeddings(session, "missing", MODEL)


@pytest.mark.parametrize(
    ("vectors", "match"),
    [
        ({"p000": np.zeros(4), "p001": np.zeros(5)}, r"differ in length: 4 \('p000'\), 5"),
        ({"p000": np.zeros((2, 4))}, r"persona 'p000' has shape \(2, 4\)"),
        ({"p000": np.zeros(0)}, r"persona 'p000' has shape \(0,\)"),
    ],
)
def test_bad_vectors_are_named(
    engine: sa.Engine, dataset_id: int, vectors: dict[str, np.ndarray], match: str
) -> None:
    with session_scope(engine) as session, pytest.raises(ValueError, match=match):
        save_persona_embeddings(session, dataset_id, MODEL, vectors)


@pytest.mark.parametrize("model", ["", "m" * 201])
def test_bad_model_name_is_named(engine: sa.Engine, dataset_id: int, model: str) -> None:
    with session_scope(engine) as session, pytest.raises(ValueError, match="embedding model"):
        save_persona_embeddings(session, dataset_id, model, _vectors(["p000"]))
