from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from storage import (
    InvalidNameError,
    PersonaLike,
    StorageError,
    get_dataset_id,
    load_personas,
    save_dataset,
    session_scope,
    validate_name,
)
from storage.datasets import SHORTENED, DatasetExistsError, storable_source
from storage.models import (
    DATASET_NAME_LENGTH,
    DATASET_SOURCE_LENGTH,
    PERSONA_KEY_LENGTH,
    Dataset,
    Example,
    Persona,
)

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
        pytest.raises(DatasetExistsError, match=r"'toy'.*a{64}.*b{64}.*another --name"),
        session_scope(engine) as session,
    ):
        save_dataset(session, name="toy", sha256="b" * 64, source="x", personas=[])


def _stored_rows(engine: sa.Engine, dataset_id: int) -> list[tuple[str, list[str]]]:
    with session_scope(engine) as session:
        return [(p.key, [e.split for e in p.examples]) for p in load_personas(session, dataset_id)]


def test_reimport_same_file_with_other_rows_refused(engine: sa.Engine, dataset_id: int) -> None:
    """The same file's hash with another split, or other personas kept, is another import."""
    before = _stored_rows(engine, dataset_id)
    personas = make_personas()
    first = personas[0]
    resplit = FakePersona(
        first.persona_id,
        first.text,
        tuple(FakeExample(e.context, e.reply, "train") for e in first.examples[:2])
        + first.examples[2:],
    )
    others = {
        "resplit": ([resplit, *personas[1:]], "3 personas, 8 train / 2 val / 2 test"),
        "one dropped": (personas[1:], "2 personas, 4 train / 2 val / 2 test"),
        "one added": (make_personas(4), "4 personas, 8 train / 4 val / 4 test"),
    }
    for rows, sizes in others.values():
        with pytest.raises(DatasetExistsError) as info, session_scope(engine) as session:
            save_dataset(session, name="toy", sha256="a" * 64, source="x", personas=rows)
        message = str(info.value)
        assert "'toy' already holds this file with another split" in message
        assert "stored 3 personas, 6 train / 3 val / 3 test examples" in message
        assert f"this import {sizes} examples" in message and "another --name" in message
    swapped = [FakePersona(p.persona_id, p.text, p.examples[::-1]) for p in personas]
    with (
        pytest.raises(DatasetExistsError, match=r"\(the same sizes, other examples\)"),
        session_scope(engine) as session,
    ):
        save_dataset(session, name="toy", sha256="a" * 64, source="x", personas=swapped)
    assert _stored_rows(engine, dataset_id) == before


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


def test_length_limits_are_the_columns() -> None:
    """One home for each limit: the models' constants are the columns' lengths, and
    validate_name allows exactly as long a dataset name."""
    columns = {
        Persona.__table__.c.key: PERSONA_KEY_LENGTH,
        Dataset.__table__.c.name: DATASET_NAME_LENGTH,
        Dataset.__table__.c.source: DATASET_SOURCE_LENGTH,
    }
    for column, length in columns.items():
        assert isinstance(column.type, sa.String) and column.type.length == length, column
    assert validate_name("n" * DATASET_NAME_LENGTH) == "n" * DATASET_NAME_LENGTH
    with pytest.raises(InvalidNameError, match=f"at most {DATASET_NAME_LENGTH}"):
        validate_name("n" * (DATASET_NAME_LENGTH + 1))


UNSTORABLE = {
    "long persona id": (
        [FakePersona("k" * (PERSONA_KEY_LENGTH + 1), "t")],
        rf"has {PERSONA_KEY_LENGTH + 1} characters; use at most {PERSONA_KEY_LENGTH}",
    ),
    "NUL in a reply": (
        [FakePersona("p", "t", (FakeExample("c", "r\x00", "train"),))],
        r"persona 'p' example 0's reply contains a NUL character",
    ),
    "surrogate in a persona text": (
        [FakePersona("p", "I am \udc80.")],
        r"the text of persona 'p' contains an unpaired surrogate",
    ),
    "NUL in a persona id": ([FakePersona("p\x00", "t")], r"persona id .* NUL"),
}


@pytest.mark.parametrize("case", list(UNSTORABLE))
def test_what_a_column_cannot_hold_is_refused_on_every_backend(
    engine: sa.Engine, case: str
) -> None:
    """SQLite would store these and PostgreSQL refuses them: both refuse them before a write."""
    personas, message = UNSTORABLE[case]
    with pytest.raises(ValueError, match=message), session_scope(engine) as session:
        save_dataset(session, name="bad", sha256="c" * 64, source="x", personas=personas)
    with (
        pytest.raises(InvalidNameError, match="dataset name"),
        session_scope(engine) as session,
    ):
        save_dataset(
            session,
            name="n" * (DATASET_NAME_LENGTH + 1),
            sha256="c" * 64,
            source="x",
            personas=make_personas(),
        )
    with session_scope(engine) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Dataset)).scalar() == 0


def test_the_longest_values_fit_on_every_backend(engine: sa.Engine) -> None:
    key, name = "k" * PERSONA_KEY_LENGTH, "n" * DATASET_NAME_LENGTH
    source = "/data/" + "s" * (DATASET_SOURCE_LENGTH * 3) + "/file.jsonl"
    with session_scope(engine) as session:
        dataset_id = save_dataset(
            session, name=name, sha256="c" * 64, source=source, personas=[FakePersona(key, "t")]
        )
    with session_scope(engine) as session:
        assert [p.key for p in load_personas(session, dataset_id)] == [key]
        stored = session.execute(sa.select(Dataset.source)).scalar_one()
    assert stored == storable_source(source)
    assert len(stored) == DATASET_SOURCE_LENGTH and SHORTENED in stored
    assert stored.startswith("/data/sss") and stored.endswith("s/file.jsonl")


def test_storable_source() -> None:
    assert storable_source("data/demo.jsonl") == "data/demo.jsonl"
    fits = "x" * DATASET_SOURCE_LENGTH
    assert storable_source(fits) == fits
    assert storable_source(fits + "y") == "x" * 498 + SHORTENED + "x" * 498 + "y"
    # A file name's undecodable byte (surrogateescape) and a NUL become backslash escapes.
    assert storable_source("d/\udcff.jsonl") == "d/\\udcff.jsonl"
    assert storable_source("a\x00b") == "a\\x00b"
