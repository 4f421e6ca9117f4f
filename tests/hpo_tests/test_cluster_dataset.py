"""cluster_dataset: embeddings computed once per dataset and model, then read from storage."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import storage
import trainers.embedding
from hpo.datasets import cluster_dataset, import_dataset
from storage.models import PersonaEmbedding
from tests.conftest import write_small_dataset
from trainers.data import SplitConfig
from trainers.embedding import DEFAULT_EMBEDDING_MODEL, embedding_model_path

N_PERSONAS = 20


class CountingEmbed:
    """The real ``trainers.embedding.embed``, recording every call's texts, model and result."""

    def __init__(self) -> None:
        self.real = trainers.embedding.embed
        self.calls: list[tuple[list[str], str | None, Any]] = []

    def __call__(self, texts: Sequence[str], name: str | None = None, **kwargs: Any) -> Any:
        vectors = self.real(texts, name, **kwargs)
        self.calls.append((list(texts), name, vectors))
        return vectors

    def texts(self) -> list[list[str]]:
        return [texts for texts, _, _ in self.calls]


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingEmbed:
    counter = CountingEmbed()
    monkeypatch.setattr(trainers.embedding, "embed", counter)
    return counter


@pytest.fixture
def engine(sqlite_url: str, tmp_path: Path) -> Iterator[Any]:
    """Storage with a small generated dataset ``small`` (20 personas)."""
    engine = storage.open_storage(sqlite_url)
    path = write_small_dataset(tmp_path / "small.jsonl", n_personas=N_PERSONAS)
    import_dataset(engine, path, name="small", split=SplitConfig(n_test=4))
    yield engine
    storage.dispose_engines()


def _texts(engine: Any) -> list[str]:
    with storage.session_scope(engine) as session:
        personas = storage.load_personas(session, storage.get_dataset_id(session, "small"))
    return [p.text for p in personas]


def _cached(engine: Any, model: str) -> dict[str, np.ndarray]:
    with storage.session_scope(engine) as session:
        return storage.load_persona_embeddings(session, "small", model)


def test_another_k_or_seed_reuses_the_stored_embeddings(
    engine: Any, counting: CountingEmbed
) -> None:
    texts = _texts(engine)
    _, first = cluster_dataset(engine, "small", k=3)
    assert counting.texts() == [texts]
    assert counting.calls[0][1] == DEFAULT_EMBEDDING_MODEL

    # What was embedded is stored bit for bit, under the persona keys.
    cached = _cached(engine, DEFAULT_EMBEDDING_MODEL)
    assert len(cached) == N_PERSONAS
    with storage.session_scope(engine) as session:
        dataset_id = storage.get_dataset_id(session, "small")
        keys = [p.key for p in storage.load_personas(session, dataset_id)]
    stored = np.stack([cached[key] for key in keys])
    assert stored.tobytes() == np.asarray(counting.calls[0][2], dtype=np.float32).tobytes()

    cluster_dataset(engine, "small", k=4)
    cluster_dataset(engine, "small", k=3, seed=1)
    _, again = cluster_dataset(engine, "small", k=3)
    assert len(counting.calls) == 1  # no text embedded a second time
    assert again == first  # the stored vectors give the very same clustering

    # The same weights under another name are another cache: embedded again, stored apart.
    other = embedding_model_path(None)
    cluster_dataset(engine, "small", k=3, embedding_model=other)
    assert counting.texts() == [texts, texts]
    assert counting.calls[1][1] == other
    assert len(_cached(engine, other)) == N_PERSONAS
    with storage.session_scope(engine) as session:
        assert storage.find_clustering(session, dataset_id, k=3, seed=0, embedding_model=other)
        count = session.execute(sa.select(sa.func.count()).select_from(PersonaEmbedding))
        assert count.scalar_one() == 2 * N_PERSONAS


def test_only_the_personas_without_a_stored_vector_are_embedded(
    engine: Any, counting: CountingEmbed
) -> None:
    texts = _texts(engine)
    cluster_dataset(engine, "small", k=3)
    with storage.session_scope(engine) as session:
        dropped = sorted(session.execute(sa.select(PersonaEmbedding.id)).scalars())[3:8]
        session.execute(sa.delete(PersonaEmbedding).where(PersonaEmbedding.id.in_(dropped)))
    assert len(_cached(engine, DEFAULT_EMBEDDING_MODEL)) == N_PERSONAS - 5

    cluster_dataset(engine, "small", k=4)
    assert len(counting.calls) == 2
    assert len(counting.calls[1][0]) == 5
    assert set(counting.calls[1][0]) <= set(texts)
    assert len(_cached(engine, DEFAULT_EMBEDDING_MODEL)) == N_PERSONAS


def test_progress_bars_for_embedding_and_kmeans(
    engine: Any,
    counting: CountingEmbed,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster_dataset(engine, "small", k=3)  # 20 personas: no bars by default
    assert "KMeans" not in capsys.readouterr().err

    with storage.session_scope(engine) as session:
        session.execute(sa.delete(PersonaEmbedding))
    monkeypatch.setattr(trainers.embedding, "_memo", {})  # as in a new process: encoded again
    cluster_dataset(engine, "small", k=3, progress=True)
    err = capsys.readouterr().err
    assert "Batches" in err  # sentence-transformers' encode bar
    assert "KMeans k=3" in err and "10/10" in err


def test_bad_k_fails_before_anything_is_embedded(engine: Any, counting: CountingEmbed) -> None:
    with pytest.raises(ValueError, match=rf"k={N_PERSONAS}: need 2 <= k < number of personas"):
        cluster_dataset(engine, "small", k=N_PERSONAS)
    assert counting.calls == []
    assert _cached(engine, DEFAULT_EMBEDDING_MODEL) == {}
