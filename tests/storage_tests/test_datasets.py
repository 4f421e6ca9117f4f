from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from storage import (
    PersonaLike,
    StorageError,
    get_dataset_id,
    load_personas,
    save_dataset,
    session_scope,
)
from storage.models import Dataset, Example

from .conftest import FakeExample, FakePersona, make_personas


def test_roundtrip(engine: sa.Engine, dataset_id: int) -> None:
    with session_scope(engine) as session:
        assert get_dataset_id(session, "toy") == dataset_id
        stored = load_personas(session, dataset_id)
    original = make_personas()
    assert [p.persona_id for p in stored] == [p.persona_id for p in original]
    for s, o in zip(stored, original, strict=True):
        assert s.key == o.persona_id and s.text == o.text
        assert [(e.idx, e.context, e.reply, e.split) for e in s.examples] == [
            (i, e.context, e.reply, e.split) for i, e in enumerate(o.examples)
        ]
    persona: PersonaLike = stored[0]  # a stored persona satisfies the input protocol
    assert persona.persona_id == "p000"


def test_reimport_same_hash_is_noop(engine: sa.Engine, dataset_id: int) -> None:
    with session_scope(engine) as session:
        again = save_dataset(
            session, name="toy", sha256="a" * 64, source="toy.jsonl", personas=make_personas()
        )
        assert again == dataset_id
        assert session.execute(sa.select(sa.func.count()).select_from(Example)).scalar() == 12


def test_reimport_other_hash_refused(engine: sa.Engine, dataset_id: int) -> None:
    with (
        pytest.raises(StorageError, match=r"'toy'.*a{64}.*b{64}.*another --name"),
        session_scope(engine) as session,
    ):
        save_dataset(session, name="toy", sha256="b" * 64, source="x", personas=[])


def test_unknown_dataset(engine: sa.Engine) -> None:
    with (
        pytest.raises(StorageError, match=r"no dataset named 'nope'.*hpo data import"),
        session_scope(engine) as session,
    ):
        get_dataset_id(session, "nope")


def test_bad_input_writes_nothing(engine: sa.Engine) -> None:
    bad = [FakePersona("p", "t", (FakeExample("c", "r", "dev"),))]
    with pytest.raises(ValueError, match="split 'dev'"), session_scope(engine) as session:
        save_dataset(session, name="bad", sha256="c" * 64, source="x", personas=bad)
    dup = [FakePersona("p", "t"), FakePersona("p", "t")]
    with (
        pytest.raises(ValueError, match="duplicate persona id 'p'"),
        session_scope(engine) as session,
    ):
        save_dataset(session, name="dup", sha256="c" * 64, source="x", personas=dup)
    with session_scope(engine) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Dataset)).scalar() == 0


def test_bulk_import_is_fast(engine: sa.Engine) -> None:
    personas = make_personas(200, 40)
    start = time.perf_counter()
    with session_scope(engine) as session:
        dataset_id = save_dataset(
            session, name="big", sha256="d" * 64, source="big.jsonl", personas=personas
        )
    assert time.perf_counter() - start < 10
    with session_scope(engine) as session:
        stored = load_personas(session, dataset_id)
    assert len(stored) == 200 and sum(len(p.examples) for p in stored) == 8000
