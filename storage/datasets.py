"""Datasets, personas and examples.

A dataset's name holds one import: a file (its sha256) and the rows stored from it, which
depend on the split options and on which personas were kept as well as on the file. Saving
under a taken name is a no-op when it would store exactly the stored rows, and refused with
:class:`DatasetExistsError` otherwise. The comparison reads the stored rows back instead of
keeping a hash of the split options: it needs no schema change, it covers datasets stored
before it existed, and options that store the same rows (a ``--min-examples`` that drops
nothing) still count as the same import.

Values the columns cannot hold are refused before any write, the same on SQLite (which would
store them) and PostgreSQL (which refuses them): a persona id over
:data:`~storage.models.PERSONA_KEY_LENGTH` characters, NUL characters and unpaired surrogates.
A source longer than :data:`~storage.models.DATASET_SOURCE_LENGTH` is stored shortened in the
middle: it is a label for people, never read back to open the file, and refusing a dataset
for the length of its path would be worse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from storage.artifacts import validate_name
from storage.errors import NotFoundError, StorageError
from storage.models import (
    DATASET_SOURCE_LENGTH,
    PERSONA_KEY_LENGTH,
    SPLITS,
    Dataset,
    Example,
    Persona,
)

__all__ = [
    "DatasetExistsError",
    "ExampleLike",
    "PersonaLike",
    "StoredExample",
    "StoredPersona",
    "get_dataset_id",
    "load_personas",
    "save_dataset",
    "storable_source",
]

SHORTENED = "..."
"""What replaces the middle of a source too long to store."""


class DatasetExistsError(StorageError):
    """The dataset name already holds another file, or the same file stored with another
    split or selection of personas; the message says which and to choose another name."""


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


def _check_text(value: str, what: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character, which PostgreSQL cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} contains an unpaired surrogate {value[exc.start]!r}: not valid Unicode"
        ) from None


def _check_personas(personas: Sequence[PersonaLike]) -> None:
    seen: set[str] = set()
    for persona in personas:
        key = persona.persona_id
        if key in seen:
            raise ValueError(f"duplicate persona id {key!r} in the dataset")
        seen.add(key)
        if len(key) > PERSONA_KEY_LENGTH:
            raise ValueError(
                f"persona id {key[:20]!r}... has {len(key)} characters; "
                f"use at most {PERSONA_KEY_LENGTH}"
            )
        _check_text(key, f"persona id {key!r}")
        _check_text(persona.text, f"the text of persona {key!r}")
        for i, example in enumerate(persona.examples):
            if example.split not in SPLITS:
                raise ValueError(
                    f"persona {key!r} example {i} has split {example.split!r}: "
                    f"use one of {', '.join(SPLITS)}"
                )
            _check_text(example.context, f"persona {key!r} example {i}'s context")
            _check_text(example.reply, f"persona {key!r} example {i}'s reply")


def storable_source(source: str) -> str:
    """``source`` as ``datasets.source`` can hold it, on every backend.

    Characters no database stores (NUL, the unpaired surrogates that stand for a file name's
    undecodable bytes) are written as backslash escapes, and a source longer than
    :data:`~storage.models.DATASET_SOURCE_LENGTH` keeps its start and its end (the file name)
    around :data:`SHORTENED`.

    Args:
        source: A path or URL.

    Returns:
        ``source`` unchanged when it fits, else its escaped, shortened form.
    """
    text = source.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= DATASET_SOURCE_LENGTH:
        return text
    keep = DATASET_SOURCE_LENGTH - len(SHORTENED)
    head = keep // 2
    return text[:head] + SHORTENED + text[len(text) - (keep - head) :]


_Rows = dict[str, tuple[str, list[tuple[str, str, str]]]]
"""A dataset's rows by persona id: the persona's text and its (context, reply, split)s."""


def _rows(personas: Sequence[PersonaLike]) -> _Rows:
    return {
        p.persona_id: (p.text, [(e.context, e.reply, e.split) for e in p.examples])
        for p in personas
    }


def _describe(rows: _Rows) -> str:
    counts = dict.fromkeys(SPLITS, 0)
    for _, examples in rows.values():
        for *_, split in examples:
            counts[split] += 1
    splits = " / ".join(f"{counts[name]} {name}" for name in SPLITS)
    return f"{len(rows)} personas, {splits} examples"


def _check_same_import(
    session: Session, dataset_id: int, name: str, stored_sha256: str, sha256: str, given: _Rows
) -> None:
    """Refuse an import under ``name`` unless it would store exactly the stored rows."""
    if stored_sha256 != sha256:
        raise DatasetExistsError(
            f"dataset {name!r} already exists with sha256 {stored_sha256}, not {sha256}: "
            "it holds another file; choose another --name"
        )
    stored = _rows(load_personas(session, dataset_id))
    if stored != given:
        stored_sizes, sizes = _describe(stored), _describe(given)
        if stored_sizes == sizes:
            sizes += " (the same sizes, other examples)"
        raise DatasetExistsError(
            f"dataset {name!r} already holds this file with another split (or other personas "
            f"kept): stored {stored_sizes}, this import {sizes}; choose another --name for "
            "this split, or repeat the first import's --n-test, --val-fraction, --split-seed "
            "and --min-examples"
        )


def save_dataset(
    session: Session,
    *,
    name: str,
    sha256: str,
    source: str,
    personas: Sequence[PersonaLike],
) -> int:
    """Store a dataset with its personas and examples; re-importing the same rows is a no-op.

    Args:
        session: An open session.
        name: Unique dataset name (:func:`~storage.validate_name`).
        sha256: Hex digest of the source file.
        source: Where the data came from (``hpo data import`` gives the file's name and
            sha256, never a machine's folder); stored as :func:`storable_source`
            gives it.
        personas: Personas with their examples.

    Returns:
        The dataset id (the existing one if ``name`` holds the same file stored the same way:
        the same personas, texts, examples and splits).

    Raises:
        DatasetExistsError: If ``name`` holds another file, or this file with other rows
            (another split, other personas kept); nothing is written.
        InvalidNameError: If ``name`` is not a valid name (too long, say).
        ValueError: If persona ids repeat or are longer than
            :data:`~storage.models.PERSONA_KEY_LENGTH`, a split is unknown, or a text holds
            NUL or an unpaired surrogate (nothing is written).
    """
    validate_name(name, what="dataset name")
    _check_personas(personas)
    existing = session.execute(
        select(Dataset.id, Dataset.sha256).where(Dataset.name == name)
    ).one_or_none()
    if existing is not None:
        _check_same_import(session, existing.id, name, existing.sha256, sha256, _rows(personas))
        return existing.id
    dataset = Dataset(
        name=name,
        sha256=sha256,
        source=storable_source(source),
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
