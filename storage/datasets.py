"""Datasets, personas and examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from storage.errors import NotFoundError, StorageError
from storage.models import SPLITS, Dataset, Example, Persona


class ExampleLike(Protocol):
    """What :func:`save_dataset` reads from an example."""

    @property
    def context(self) -> str: ...
    @property
    def reply(self) -> str: ...
    @property
    def split(self) -> str: ...


class PersonaLike(Protocol):
    """What :func:`save_dataset` reads from a persona."""

    @property
    def persona_id(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def examples(self) -> Sequence[ExampleLike]: ...


@dataclass(frozen=True)
class StoredExample:
    """An example as stored."""

    id: int
    """Database id (``examples.id``)."""
    idx: int
    """Order within its persona."""
    context: str
    reply: str
    split: str


@dataclass(frozen=True)
class StoredPersona:
    """A persona as stored, with its examples in order; satisfies :class:`PersonaLike`."""

    id: int
    """Database id (``personas.id``)."""
    key: str
    """The persona id from the dataset file."""
    text: str
    examples: tuple[StoredExample, ...]

    @property
    def persona_id(self) -> str:
        """The persona id from the dataset file (same as ``key``)."""
        return self.key


def _check_personas(personas: Sequence[PersonaLike]) -> None:
    seen: set[str] = set()
    for persona in personas:
        if persona.persona_id in seen:
            raise ValueError(f"duplicate persona id {persona.persona_id!r} in the dataset")
        seen.add(persona.persona_id)
        for i, example in enumerate(persona.examples):
            if example.split not in SPLITS:
                raise ValueError(
                    f"persona {persona.persona_id!r} example {i} has split {example.split!r}: "
                    f"use one of {', '.join(SPLITS)}"
                )


def save_dataset(
    session: Session,
    *,
    name: str,
    sha256: str,
    source: str,
    personas: Sequence[PersonaLike],
) -> int:
    """Store a dataset with its personas and examples; re-importing the same file is a no-op.

    Args:
        session: An open session.
        name: Unique dataset name.
        sha256: Hex digest of the source file.
        source: Where the data came from (a path or URL).
        personas: Personas with their examples.

    Returns:
        The dataset id (the existing one if ``name`` was imported with the same hash).

    Raises:
        StorageError: If ``name`` exists with a different hash.
        ValueError: If persona ids repeat or a split is unknown (nothing is written).
    """
    existing = session.execute(
        select(Dataset.id, Dataset.sha256).where(Dataset.name == name)
    ).one_or_none()
    if existing is not None:
        if existing.sha256 == sha256:
            return existing.id
        raise StorageError(
            f"dataset {name!r} already exists with sha256 {existing.sha256}, "
            f"not {sha256}: choose another --name"
        )
    _check_personas(personas)
    dataset = Dataset(
        name=name,
        sha256=sha256,
        source=source,
        n_personas=len(personas),
        n_examples=sum(len(p.examples) for p in personas),
    )
    session.add(dataset)
    session.flush()
    if not personas:
        return dataset.id
    session.execute(
        insert(Persona),
        [{"dataset_id": dataset.id, "key": p.persona_id, "text": p.text} for p in personas],
    )
    ids = {
        key: persona_id
        for key, persona_id in session.execute(
            select(Persona.key, Persona.id).where(Persona.dataset_id == dataset.id)
        )
    }
    rows = [
        {
            "persona_id": ids[p.persona_id],
            "idx": i,
            "context": e.context,
            "reply": e.reply,
            "split": e.split,
        }
        for p in personas
        for i, e in enumerate(p.examples)
    ]
    if rows:
        session.execute(insert(Example), rows)
    return dataset.id


def get_dataset_id(session: Session, name: str) -> int:
    """Return the id of the dataset called ``name``.

    Args:
        session: An open session.
        name: The dataset name.

    Returns:
        The dataset id.

    Raises:
        StorageError: If no dataset has that name.
    """
    dataset_id = session.execute(select(Dataset.id).where(Dataset.name == name)).scalar()
    if dataset_id is None:
        raise NotFoundError(f"no dataset named {name!r}; import one with `hpo data import`")
    return dataset_id


def load_personas(session: Session, dataset_id: int) -> list[StoredPersona]:
    """Return a dataset's personas ordered by key, each with its examples ordered by ``idx``.

    Args:
        session: An open session.
        dataset_id: The dataset id.

    Returns:
        The personas (empty if the dataset has none).
    """
    personas = session.execute(
        select(Persona.id, Persona.key, Persona.text)
        .where(Persona.dataset_id == dataset_id)
        .order_by(Persona.key)
    ).all()
    examples: dict[int, list[StoredExample]] = {p.id: [] for p in personas}
    for row in session.execute(
        select(
            Example.persona_id,
            Example.id,
            Example.idx,
            Example.context,
            Example.reply,
            Example.split,
        )
        .join(Persona, Persona.id == Example.persona_id)
        .where(Persona.dataset_id == dataset_id)
        .order_by(Example.persona_id, Example.idx)
    ):
        examples[row.persona_id].append(
            StoredExample(row.id, row.idx, row.context, row.reply, row.split)
        )
    return [StoredPersona(p.id, p.key, p.text, tuple(examples[p.id])) for p in personas]
