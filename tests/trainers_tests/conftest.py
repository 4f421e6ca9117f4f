"""Random-init models of real architectures, saved once per test session with the tiny
model's tokenizer (trained in seconds; no tiny-model pretraining)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SaveModel = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    """The tiny model's tokenizer (1,559 tokens), trained once."""
    from trainers.tiny.model import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="session")
def random_model(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> SaveModel:
    """``random_model("qwen2", hidden=32, layers=1)``: the folder of a random-init model of
    that architecture with the tiny tokenizer, saved once per session and arguments."""
    from trainers.tiny.architectures import save_random_model

    root = tmp_path_factory.mktemp("architectures")
    saved: dict[tuple[Any, ...], Path] = {}

    def save(architecture: str, **size: int) -> Path:
        key = (architecture, *sorted(size.items()))
        if key not in saved:
            name = "-".join(str(part) for part in key).replace("(", "").replace(")", "")
            out = root / name.replace("'", "").replace(", ", "_")
            saved[key] = save_random_model(architecture, out, tiny_tokenizer, **size)
        return saved[key]

    return save
