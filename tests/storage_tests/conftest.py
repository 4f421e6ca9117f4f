"""Fixtures of the storage tests: an initialized engine and a small dataset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from storage import dispose_engines, open_storage, save_dataset, session_scope


@dataclass(frozen=True)
class FakeExample:
    context: str
    reply: str
    split: str


@dataclass(frozen=True)
class FakePersona:
    persona_id: str
    text: str
    examples: tuple[FakeExample, ...] = field(default_factory=tuple)


def make_personas(n_personas: int = 3, n_examples: int = 4) -> list[FakePersona]:
    """Personas ``p000``... with examples split 1 val, 1 test, the rest train."""
    splits = ["val", "test"] + ["train"] * max(0, n_examples - 2)
    return [
        FakePersona(
            persona_id=f"p{p:03d}",
            text=f"I am persona {p}.",
            examples=tuple(
                FakeExample(f"context {p}/{i}", f"reply {p}/{i}", splits[i % len(splits)])
                for i in range(n_examples)
            ),
        )
        for p in range(n_personas)
    ]


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def engine(storage_url: str) -> sa.Engine:
    """An engine on a fresh database (SQLite and PostgreSQL) with the schema created."""
    return open_storage(storage_url)


@pytest.fixture
def dataset_id(engine: sa.Engine) -> int:
    """A stored dataset of 3 personas x 4 examples."""
    with session_scope(engine) as session:
        return save_dataset(
            session, name="toy", sha256="a" * 64, source="toy.jsonl", personas=make_personas()
        )
