"""Persona embeddings, computed once per dataset and embedding model and reused.

A clustering with another k or seed (and anything else that needs a persona's vector) reads
these rows instead of embedding the texts again. A stored persona's text never changes (a
dataset name is bound to its file's sha256), so a row stays valid for as long as the persona
exists; the key is the embedding model's name as the caller gives it.

Vectors are stored as little-endian float32 bytes and come back bit for bit. numpy is
imported inside the functions, so that importing :mod:`storage` stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.datasets import get_dataset_id
from storage.engine import dialect_insert
from storage.errors import NotFoundError, StorageError
from storage.models import Persona, PersonaEmbedding

if TYPE_CHECKING:
    import numpy as np

VECTOR_DTYPE = "<f4"
"""How a vector is stored: little-endian float32, ``dim`` of them."""

MODEL_NAME_MAX = 200
"""Length of the ``embedding_model`` column."""


def _dataset_id(session: Session, dataset: int | str) -> int:
    """The id of a dataset given by id or by name."""
    if isinstance(dataset, str):
        return get_dataset_id(session, dataset)
    return dataset


def _check_model(model: str) -> None:
    if not model or len(model) > MODEL_NAME_MAX:
        raise ValueError(
            f"invalid embedding model name {model!r}: use 1 to {MODEL_NAME_MAX} characters"
        )


def save_persona_embeddings(
    session: Session, dataset: int | str, model: str, vectors: Mapping[str, Any]
) -> int:
    """Store the embeddings of some personas of a dataset; a stored one is replaced.

    Safe against a concurrent save of the same personas (one insert-or-update per row).

    Args:
        session: An open session.
        dataset: The dataset's id or name.
        model: The embedding model's name (part of the key: another name is another cache).
        vectors: Persona key (the persona id from the dataset file) -> 1-D vector; every
            vector has the same length.

    Returns:
        The number of vectors stored.

    Raises:
        ValueError: If the model name is empty or too long, a vector is not 1-D and non-empty,
            or the vectors differ in length.
        NotFoundError: If the dataset, or a persona key in it, does not exist.
    """
    import numpy as np

    _check_model(model)
    dataset_id = _dataset_id(session, dataset)
    arrays: dict[str, np.ndarray] = {}
    dims: dict[int, str] = {}
    for key, vector in vectors.items():
        array = np.asarray(vector, dtype=VECTOR_DTYPE)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(
                f"embedding of persona {key!r} has shape {array.shape}: expected one non-empty row"
            )
        dims.setdefault(array.size, key)
        arrays[key] = array
    if len(dims) > 1:
        examples = ", ".join(f"{dim} ({key!r})" for dim, key in sorted(dims.items()))
        raise ValueError(f"embeddings under model {model!r} differ in length: {examples}")
    if not arrays:
        return 0
    # All of the dataset's keys, not an IN list: SQLite caps the number of bound parameters.
    ids = {
        key: persona_id
        for key, persona_id in session.execute(
            select(Persona.key, Persona.id).where(Persona.dataset_id == dataset_id)
        )
    }
    unknown = sorted(set(arrays) - set(ids))
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        raise NotFoundError(f"{len(unknown)} persona keys are not in dataset {dataset!r}: {shown}")
    stmt = dialect_insert(session, PersonaEmbedding)
    stmt = stmt.on_conflict_do_update(
        index_elements=["persona_id", "embedding_model"],
        set_={"dim": stmt.excluded.dim, "vector": stmt.excluded.vector},
    )
    session.execute(
        stmt,
        [
            {
                "persona_id": ids[key],
                "embedding_model": model,
                "dim": array.size,
                "vector": array.tobytes(),
            }
            for key, array in arrays.items()
        ],
    )
    return len(arrays)


def load_persona_embeddings(
    session: Session, dataset: int | str, model: str
) -> dict[str, np.ndarray]:
    """Return the stored embeddings of a dataset's personas under one model.

    Personas without a stored vector are missing from the result (empty when none is cached),
    so the caller embeds only those.

    Args:
        session: An open session.
        dataset: The dataset's id or name.
        model: The embedding model's name, as given to :func:`save_persona_embeddings`.

    Returns:
        Persona key -> float32 vector (a writable copy), bit for bit as saved.

    Raises:
        NotFoundError: If a dataset name is unknown.
        StorageError: If a stored row's byte length does not match its ``dim``.
    """
    import numpy as np

    _check_model(model)
    dataset_id = _dataset_id(session, dataset)
    rows = session.execute(
        select(Persona.key, PersonaEmbedding.dim, PersonaEmbedding.vector)
        .join(Persona, Persona.id == PersonaEmbedding.persona_id)
        .where(Persona.dataset_id == dataset_id, PersonaEmbedding.embedding_model == model)
    )
    result: dict[str, np.ndarray] = {}
    itemsize = np.dtype(VECTOR_DTYPE).itemsize
    for key, dim, blob in rows:
        if len(blob) != dim * itemsize:
            raise StorageError(
                f"stored embedding of persona {key!r} under model {model!r} has {len(blob)} "
                f"bytes, not {dim} x {itemsize}: delete the row and cluster again"
            )
        result[key] = np.frombuffer(blob, dtype=VECTOR_DTYPE).astype(np.float32)
    return result
