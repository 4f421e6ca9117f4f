"""Weighted LoRA merges: cat is exact, the peft methods delegate, merges never leak into each other.

Source adapters are real peft LoRA adapters with random, non-zero factors, saved with
``save_pretrained`` from a tiny Llama built in the test; merged adapters are loaded back with
plain ``PeftModel.from_pretrained``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import storage
from evaluators.moe.merge import (
    MERGE_INFO_NAME,
    MERGE_METHODS,
    CatMerge,
    get_merge_method,
    max_delta_error,
    read_adapter,
    weighted_delta_sum,
)
from trainers.adapter_check import AdapterError

TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]
VOCAB = 96


@pytest.fixture(scope="module")
def base() -> Any:
    """A tiny Llama (grouped-query attention, so q and v have different shapes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def make_adapter(
    model: Any,
    path: Path,
    *,
    rank: int,
    seed: int,
    alpha: int | None = None,
    use_rslora: bool = False,
    targets: Sequence[str] = TARGETS,
    base_name: str | None = None,
) -> Path:
    """Save a real peft LoRA adapter with random A and B (peft's default B would be zero)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        target_modules=list(targets),
        init_lora_weights=False,
        use_rslora=use_rslora,
        lora_dropout=0.0,
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.2)
    peft_model.save_pretrained(str(path))
    peft_model.unload()
    if base_name is not None:
        config_file = path / "adapter_config.json"
        saved = json.loads(config_file.read_text())
        config_file.write_text(json.dumps({**saved, "base_model_name_or_path": base_name}))
    return path


@pytest.fixture(scope="module")
def mixed_sources(base: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three sources with different ranks and alphas, one of them rsLoRA."""
    root = tmp_path_factory.mktemp("mixed")
    specs = [(4, 8, False), (8, 4, True), (2, 2, False)]
    return [
        make_adapter(base, root / f"s{i}", rank=r, alpha=a, use_rslora=rs, seed=10 + i)
        for i, (r, a, rs) in enumerate(specs)
    ]


@pytest.fixture(scope="module")
def even_sources(base: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Five rank-4 sources, the shape every peft method accepts."""
    root = tmp_path_factory.mktemp("even")
    return [make_adapter(base, root / f"p{i}", rank=4, seed=100 + i) for i in range(5)]


def _load_merged(model: Any, path: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(path))


def _module_deltas(peft_model: Any) -> dict[str, Any]:
    """What the loaded adapter really adds, per module: peft's own get_delta_weight."""
    from peft.tuners.lora import LoraLayer

    return {
        name: module.get_delta_weight("default").detach().clone()
        for name, module in peft_model.base_model.model.named_modules()
        if isinstance(module, LoraLayer)
    }


def _with_dense_deltas(model: Any, deltas: dict[str, Any]) -> Any:
    """A copy of the base model with each dense delta added to its module's weight."""
    import torch

    dense = copy.deepcopy(model)
    modules = dict(dense.named_modules())
    with torch.no_grad():
        for key, delta in deltas.items():
            name = key.removeprefix("base_model.model.")
            modules[name].weight += delta
    return dense


def test_cat_merge_equals_dense_weighted_sum(
    base: Any, mixed_sources: list[Path], tmp_path: Path
) -> None:
    import torch

    weights = [0.55, 0.3, 0.15]
    out = CatMerge().merge(mixed_sources, weights, tmp_path / "merged")
    sources = [read_adapter(s) for s in mixed_sources]
    reference = weighted_delta_sum(sources, weights)
    assert min(float(d.abs().max()) for d in reference.values()) > 1e-2, "sources are zero"

    merged = read_adapter(out)
    assert merged.config.r == 4 + 8 + 2
    assert merged.scaling == 1.0
    assert not merged.config.use_rslora
    assert max_delta_error(merged, sources, weights) < 1e-5

    peft_model = _load_merged(base, out)
    try:
        loaded = _module_deltas(peft_model)
        assert len(loaded) == len(reference) == 2 * len(TARGETS)
        for key, delta in reference.items():
            name = key.removeprefix("base_model.model.")
            assert torch.allclose(loaded[name], delta, atol=1e-5, rtol=0), name
        ids = torch.randint(0, VOCAB, (3, 11), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            got = peft_model(input_ids=ids).logits
    finally:
        peft_model.unload()
    with torch.no_grad():
        expected = _with_dense_deltas(base, reference)(input_ids=ids).logits
        unchanged = base(input_ids=ids).logits
    assert (expected - unchanged).abs().max() > 1e-3, "the merged delta must change the outputs"
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_merge_writes_its_sources_and_weights(mixed_sources: list[Path], tmp_path: Path) -> None:
    out = get_merge_method("cat").merge(mixed_sources[:2], [0.7, 0.3], tmp_path / "m")
    info = json.loads((out / MERGE_INFO_NAME).read_text())
    assert info == {
        "method": "cat",
        "sources": [
            {"name": p.name, "sha256": storage.directory_sha256(p)[0]} for p in mixed_sources[:2]
        ],
        "weights": [0.7, 0.3],
        "rank": 12,
    }


@pytest.mark.parametrize("method", sorted(MERGE_METHODS))
def test_two_merges_in_a_row_do_not_reuse_the_first(
    method: str, base: Any, even_sources: list[Path], tmp_path: Path
) -> None:
    """The same method object merges two targets; the second result is its own merge.

    Both merges write to the same directory, as a rerun would; the second must equal what a
    fresh method object makes of the second target's sources, and differ from the first.
    """
    merger = get_merge_method(method, model=base)
    first_sources, first_weights = even_sources[:3], [0.5, 0.3, 0.2]
    second_sources, second_weights = even_sources[2:], [0.6, 0.25, 0.15]
    out = tmp_path / "target"
    merger.merge(first_sources, first_weights, out)
    first = read_adapter(out)
    merger.merge(second_sources, second_weights, out)
    second = read_adapter(out)
    fresh = read_adapter(
        get_merge_method(method, model=base).merge(second_sources, second_weights, tmp_path / "f")
    )

    assert first.tensors.keys() == second.tensors.keys() == fresh.tensors.keys()
    for key in second.tensors:
        assert not second.tensors[key].equal(first.tensors[key]), key
        assert second.tensors[key].allclose(fresh.tensors[key], atol=1e-6), key
    peft_model = _load_merged(base, out)
    peft_model.unload()


def test_peft_merges_leave_the_base_model_as_it_was(
    base: Any, even_sources: list[Path], tmp_path: Path
) -> None:
    import torch

    before = {k: v.clone() for k, v in base.state_dict().items()}
    for method in ("linear", "ties", "dare_ties", "svd"):
        get_merge_method(method, model=base).merge(even_sources, [0.2] * 5, tmp_path / method)
    assert not hasattr(base, "peft_config")
    after = base.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_svd_truncates_to_the_largest_rank_unless_told(
    base: Any, mixed_sources: list[Path], tmp_path: Path
) -> None:
    """peft's default svd keeps the largest source rank (lossy); at the full rank it is exact."""
    weights = [0.55, 0.3, 0.15]
    sources = [read_adapter(s) for s in mixed_sources[:1] + mixed_sources[2:]]
    paths = [mixed_sources[0], mixed_sources[2]]  # the two plain-LoRA sources, ranks 4 and 2
    w = weights[:2]
    default = read_adapter(get_merge_method("svd", model=base).merge(paths, w, tmp_path / "d"))
    full = read_adapter(
        get_merge_method("svd", model=base, svd_rank=6).merge(paths, w, tmp_path / "f")
    )
    assert default.config.r == 4
    assert max_delta_error(default, sources, w) > 1e-3
    assert full.config.r == 6
    assert max_delta_error(full, sources, w) < 1e-5


def test_refuses_adapters_of_different_base_models(base: Any, tmp_path: Path) -> None:
    a = make_adapter(base, tmp_path / "a", rank=2, seed=1, base_name="org/model-a")
    b = make_adapter(base, tmp_path / "b", rank=2, seed=2, base_name="org/model-b")
    with pytest.raises(ValueError, match=r"base model 'org/model-b'.*merge adapters of one base"):
        CatMerge().merge([a, b], [0.5, 0.5], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_refuses_adapters_of_different_target_modules(base: Any, tmp_path: Path) -> None:
    a = make_adapter(base, tmp_path / "a", rank=2, seed=1, targets=["q_proj"])
    b = make_adapter(base, tmp_path / "b", rank=2, seed=2, targets=["v_proj"])
    with pytest.raises(ValueError, match="adapt different modules"):
        CatMerge().merge([a, b], [0.5, 0.5], tmp_path / "m")


def test_peft_methods_refuse_rslora_and_mixed_ranks(
    base: Any, mixed_sources: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"use_rslora=True.*peft 0\.21\.2.*use method 'cat'"):
        get_merge_method("svd", model=base).merge(mixed_sources, [0.4, 0.3, 0.3], tmp_path / "s")
    plain = [mixed_sources[0], mixed_sources[2]]
    with pytest.raises(ValueError, match=r"'ties' needs sources of one rank, got ranks \[2, 4\]"):
        get_merge_method("ties", model=base).merge(plain, [0.5, 0.5], tmp_path / "t")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("slerp", {}, "unknown merge method 'slerp'"),
        ("svd", {}, r"needs the base model \(model=None"),
        ("ties", {"model": object(), "density": 0.0}, "invalid density=0.0"),
        ("svd", {"model": object(), "svd_rank": 0}, "invalid svd_rank=0"),
        ("cat", {"density": 0.5}, "'cat' takes no options"),
    ],
)
def test_get_merge_method_checks_arguments(name: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_merge_method(name, **options)


def test_merge_checks_weights_and_sources(mixed_sources: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 sources but 3 weights"):
        CatMerge().merge(mixed_sources[:2], [0.3, 0.3, 0.4], tmp_path / "m")
    with pytest.raises(ValueError, match="invalid merge weight nan"):
        CatMerge().merge(mixed_sources[:2], [0.5, float("nan")], tmp_path / "m")
    with pytest.raises(AdapterError, match=r"adapter_config\.json: missing: the folder holds no"):
        CatMerge().merge([tmp_path], [1.0], tmp_path / "m")


def test_a_nested_adapter_config_is_refused_naming_the_file(tmp_path: Path) -> None:
    """peft would parse it with json (RecursionError, no file named): refused before."""
    config = tmp_path / "adapter_config.json"
    config.write_text('{"peft_type": "LORA",\n"r": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(AdapterError) as info:
        read_adapter(tmp_path)
    assert str(info.value) == f"{config}: line 2: nested deeper than 64 levels"
