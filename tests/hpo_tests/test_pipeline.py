"""import_dataset: the real Synthetic-Persona-Chat file into the real PostgreSQL."""

from __future__ import annotations

import time

import pytest

import storage
from hpo.datasets import import_dataset
from tests.trainers_tests.formats_tests.conftest import real_csv
from trainers.data import DatasetError, persona_id_for


def test_import_real_csv_with_min_examples(pg_url: str) -> None:
    engine = storage.open_storage(pg_url)
    path = real_csv()

    # Without --min-examples: one error that counts the short personas; nothing is written.
    with pytest.raises(DatasetError, match="628 of 1905 personas have fewer than 12 examples"):
        import_dataset(engine, path, name="spc")
    with storage.session_scope(engine) as session, pytest.raises(storage.NotFoundError):
        storage.get_dataset_id(session, "spc")

    started = time.perf_counter()
    summary = import_dataset(engine, path, name="spc", min_examples=12)
    elapsed = time.perf_counter() - started

    assert (summary.n_personas, summary.n_examples) == (1277, 21765)
    assert summary.load.line() == (
        "synthetic_persona_chat: kept 1277 personas, dropped 628 with fewer than 12 examples; "
        "examples 7584 train, 1411 val, 12770 test; "
        "skipped 95 lines (55 stage direction, 40 unlabelled)"
    )
    with storage.session_scope(engine) as session:
        personas = storage.load_personas(session, summary.dataset_id)
    assert len(personas) == 1277
    assert sum(len(p.examples) for p in personas) == 21765
    baker_text = (
        "I love to bake cookies. I have a dogs. The county wide bake sale is where i feel "
        "most at home. Knitting is my passion."
    )
    baker = next(p for p in personas if p.key == persona_id_for(baker_text))
    assert baker.text == baker_text
    assert [(e.context, e.reply) for e in baker.examples[:2]] == [
        ("", "Hi!"),
        ("Hi!\nHello!", "What is your favorite thing to do?"),
    ]
    # Same file, same name: the stored dataset, not a second copy.
    assert import_dataset(engine, path, name="spc", min_examples=12).dataset_id == (
        summary.dataset_id
    )
    assert elapsed < 60, f"importing the real CSV took {elapsed:.1f} s"
