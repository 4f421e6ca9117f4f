"""The per-process embedding memo: the same vectors as the model's own, each text encoded once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from trainers import embedding

TEXTS = [f"I walk my dog number {i} every morning." for i in range(12)]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Every batch of texts the real model is asked to encode, with an empty memo."""
    monkeypatch.setattr(embedding, "_memo", {})
    model = embedding.load_embedding_model(None)
    calls: list[list[str]] = []
    real = model.encode

    def encode(texts: list[str], **kwargs: Any) -> Any:
        calls.append(list(texts))
        return real(texts, **kwargs)

    monkeypatch.setattr(model, "encode", encode)
    yield calls


def test_vectors_equal_the_models_own(counted: list[list[str]]) -> None:
    model = embedding.load_embedding_model(None)
    direct = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    counted.clear()
    first = embedding.embed(TEXTS)
    again = embedding.embed(list(reversed(TEXTS)))
    assert first.dtype == np.float32 and first.shape == (12, 384)
    np.testing.assert_allclose(first, direct, atol=1e-6)
    np.testing.assert_array_equal(again[::-1], first)
    assert counted == [TEXTS]  # the second call encoded nothing


def test_each_distinct_text_is_encoded_once(counted: list[list[str]]) -> None:
    vectors = embedding.embed([TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[0]])
    embedding.embed([TEXTS[1], TEXTS[2]])
    assert counted == [[TEXTS[0], TEXTS[1]], [TEXTS[2]]]
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1])


def test_the_memo_is_bounded(counted: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "EMBEDDING_MEMO_SIZE", 3)
    embedding.embed(TEXTS[:5])
    assert len(embedding._memo) == 3
    out = embedding.embed(TEXTS[:5])  # the two left out are encoded again, not lost
    assert counted == [TEXTS[:5], TEXTS[3:5]]
    assert out.shape == (5, 384)


def test_no_texts_give_an_empty_matrix() -> None:
    assert embedding.embed([]).shape == (0, 384)
