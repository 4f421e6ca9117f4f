"""The demo's tiny base model: deterministic build, cache reuse, crash safety, tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainers.config import ModelConfig
from trainers.tiny import TinyModelSpec, ensure_tiny_model, tiny_model_dir
from trainers.tiny import model as tiny_model

SMALL_SPEC = TinyModelSpec(pretrain_steps=5, corpus_lines=400, vocab_size=600)
"""A quick build (well under a second) with the same recipe."""


def _build(root: Path, seed: int = 0) -> Path:
    return ensure_tiny_model(ModelConfig(cache_dir=str(root), seed=seed), SMALL_SPEC)


def test_build_is_deterministic_by_seed(tmp_path: Path) -> None:
    first = _build(tmp_path / "a")
    second = _build(tmp_path / "b")
    assert first != second
    for name in ("model.safetensors", "tokenizer.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    other_seed = _build(tmp_path / "c", seed=1)
    assert (other_seed / "model.safetensors").read_bytes() != (
        first / "model.safetensors"
    ).read_bytes()


def test_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _build(tmp_path)
    assert (path / "build.json").is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}

    def no_rebuild(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cached tiny model was rebuilt")

    monkeypatch.setattr(tiny_model, "_build_tiny_model", no_rebuild)
    assert _build(tmp_path) == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == stamps


def test_no_leftover_temporary_directories(tmp_path: Path) -> None:
    path = _build(tmp_path)
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_failed_build_leaves_no_cache_and_no_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(out: Path, seed: int, spec: TinyModelSpec) -> None:
        (out / "partial.bin").write_bytes(b"x")
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(tiny_model, "_build_tiny_model", crash)
    config = ModelConfig(cache_dir=str(tmp_path), seed=0)
    with pytest.raises(RuntimeError, match="mid-build"):
        ensure_tiny_model(config, SMALL_SPEC)
    assert not tiny_model_dir(config, SMALL_SPEC).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_cache_directory_depends_on_the_whole_spec(tmp_path: Path) -> None:
    config = ModelConfig(cache_dir=str(tmp_path))
    assert tiny_model_dir(config, SMALL_SPEC) != tiny_model_dir(config, TinyModelSpec())


@pytest.mark.parametrize(
    "text",
    [
        "Persona: I love hiking.\nA: What do you do on weekends?\nB: Mostly hiking trails.",
        "Café, naïve, 東京 and emoji 🙂 survive byte-level BPE.",
    ],
)
def test_tokenizer_round_trips_text(tiny_base: Any, text: str) -> None:
    tokenizer = tiny_base.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.pad_token_id is not None
    assert tokenizer.eos_token_id is not None
