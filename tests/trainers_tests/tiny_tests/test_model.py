"""The demo's tiny base model: deterministic build, cache reuse, crash safety, tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainers.config import ModelConfig
from trainers.tiny import TinyModelSpec, ensure_tiny_model, tiny_model_dir
from trainers.tiny import model as tiny_model

SMALL_SPEC = TinyModelSpec(pretrain_steps=5, corpus_personas=40, corpus_examples=5, vocab_size=600)
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


def test_a_killed_build_s_folder_is_removed_by_the_next_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build killed midway leaves `.tmp-<model>-<random>` in the cache; the next builder,
    holding the build lock (so no live process builds that model), removes it. Another
    model's folder is left to its own builder."""

    def quick_build(out: Path, seed: int, spec: TinyModelSpec) -> None:
        (out / "build.json").write_text("{}", encoding="utf-8")

    monkeypatch.setattr(tiny_model, "_build_tiny_model", quick_build)
    config = ModelConfig(cache_dir=str(tmp_path), seed=0)
    target = tiny_model_dir(config, SMALL_SPEC)
    killed = tmp_path / f".tmp-{target.name}-k1ll3d"
    other = tmp_path / ".tmp-another-model-k1ll3d"
    for folder in (killed, other):
        folder.mkdir()
        (folder / "partial.bin").write_bytes(b"x")
    assert ensure_tiny_model(config, SMALL_SPEC) == target
    assert not killed.exists() and other.is_dir()


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


def test_pretraining_chats_are_prompts_of_other_personas_than_the_demo() -> None:
    from trainers.prompt import PERSONA_TAG, SELF
    from trainers.tiny.generator import generate_personas

    texts = tiny_model.pretraining_texts(0, SMALL_SPEC)
    assert len(texts) == SMALL_SPEC.corpus_personas * SMALL_SPEC.corpus_examples
    demo = {str(r["persona"]) for r in generate_personas(tiny_model.DEMO_PERSONAS, 1)}
    for text in texts:
        lines = text.split("\n")
        assert lines[0].startswith(f"{PERSONA_TAG} ")
        assert lines[0].removeprefix(f"{PERSONA_TAG} ") not in demo
        assert lines[-1].startswith(f"{SELF}: ")
    assert tiny_model.pretraining_texts(1, SMALL_SPEC) != texts


def test_cache_directory_names_the_recipe_version(tmp_path: Path) -> None:
    name = tiny_model_dir(ModelConfig(cache_dir=str(tmp_path)), SMALL_SPEC).name
    assert name.startswith(f"tiny-llama-v{tiny_model.TINY_RECIPE_VERSION}-")


def _reply_loss(base: Any, prompts: list[str], replies: list[str]) -> list[float]:
    """Mean token loss of each reply (and EOS) after its prompt."""
    import torch

    from trainers.batching import PromptPair, tokenize_pairs

    tokenizer = base.tokenizer
    rows = tokenize_pairs(
        tokenizer, [PromptPair(p, " " + r) for p, r in zip(prompts, replies, strict=True)], 256
    ).rows
    losses = []
    with torch.inference_mode():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor([row["labels"]])
            losses.append(float(base.model(input_ids=ids, labels=labels).loss))
    return losses


def test_the_base_model_reads_the_persona(tiny_base: Any) -> None:
    """On demo examples (personas it never saw), the reference reply is likelier after its own
    persona than after a far persona's (another archetype's), for most examples."""
    from trainers.prompt import build_prompt
    from trainers.tiny.generator import generate_personas, persona_archetypes

    records = generate_personas(40, 4, seed=0)
    kinds = persona_archetypes(40, seed=0)
    texts = {str(r["persona_id"]): str(r["persona"]) for r in records}
    ids = list(texts)
    far = {
        pid: texts[next(o for o in ids[i + 1 :] + ids if kinds[ids.index(o)] != kinds[i])]
        for i, pid in enumerate(ids)
    }
    contexts = ["\n".join(r["context"]) for r in records]  # type: ignore[arg-type]
    replies = [str(r["reply"]) for r in records]
    own = [build_prompt(str(r["persona"]), c) for r, c in zip(records, contexts, strict=True)]
    swapped = [
        build_prompt(far[str(r["persona_id"])], c) for r, c in zip(records, contexts, strict=True)
    ]
    own_loss = _reply_loss(tiny_base, own, replies)
    swapped_loss = _reply_loss(tiny_base, swapped, replies)
    better = sum(a < b for a, b in zip(own_loss, swapped_loss, strict=True))
    assert better >= 0.8 * len(records), (better, len(records))
    assert sum(swapped_loss) - sum(own_loss) > 0.1 * len(records)
