"""The MoE merge on real peft adapters of the tiny model and real storage: routes with and
without the persona's own adapter, merged adapters equal to the dense weighted sum, the
results file, refusals that name the missing persona, and mixed-adapter batches that store
the replies of persona by persona."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import storage
from evaluators.config import EvalConfig
from evaluators.moe import run as moe
from evaluators.moe.merge import max_delta_error, read_adapter
from evaluators.moe.run import MoeScope, MoeSettings, PersonaAdapter
from evaluators.report.decision import MOE_COLD, MOE_SELF
from tests.conftest import write_small_dataset
from trainers.data import SplitConfig, load_dataset
from trainers.input_file import InputFileError


@pytest.fixture
def stored(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Any, int, list[Any]]]:
    path = write_small_dataset(tmp_path / "small.jsonl", n_personas=10, examples=8)
    dataset = load_dataset(path, split=SplitConfig(n_test=2)).dataset
    engine = storage.open_storage(sqlite_url)
    with storage.session_scope(engine) as session:
        dataset_id = storage.save_dataset(
            session,
            name="small",
            sha256=dataset.sha256,
            source=str(path),
            personas=dataset.personas,
        )
        personas = storage.load_personas(session, dataset_id)
    yield engine, dataset_id, personas[:4]
    storage.dispose_engines()


def _adapters(personas: list[Any], folder: Path) -> dict[str, PersonaAdapter]:
    """One randomly initialised (B != 0) LoRA adapter of the tiny model per persona."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from trainers.config import ModelConfig
    from trainers.tiny import ensure_tiny_model

    out = {}
    for i, persona in enumerate(personas):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(ModelConfig()))
        config = LoraConfig(
            r=2 + i % 2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        path = folder / persona.key
        get_peft_model(model, config).save_pretrained(str(path))
        sha, _ = storage.directory_sha256(path)
        out[persona.key] = PersonaAdapter(persona.key, path, sha)
    return out


def test_both_variants_route_and_merge_exactly(
    stored: tuple[Any, int, list[Any]], tmp_path: Path
) -> None:
    engine, dataset_id, personas = stored
    adapters = _adapters(personas, tmp_path / "personas")
    scope = MoeScope("study", dataset_id, None, 4, personas, EvalConfig(max_new_tokens=4))
    layout = storage.OutputLayout(tmp_path / "out")
    data, merged = moe.merge_all(engine, layout, scope, adapters, MoeSettings(k=2))
    keys = [p.key for p in personas]
    for variant, include_self in ((MOE_SELF, True), (MOE_COLD, False)):
        routes = data["variants"][variant]["routes"]
        assert [r["target"] for r in routes] == keys
        for r in routes:
            assert len(r["sources"]) == 2
            assert (r["target"] in r["sources"]) is include_self
            assert sum(r["weights"]) == pytest.approx(1.0)
            out = merged[variant][r["target"]]
            assert out.path == layout.root / "models" / "study" / variant / r["target"]
            sources = [read_adapter(adapters[s].path) for s in r["sources"]]
            assert max_delta_error(read_adapter(out.path), sources, r["weights"]) < 1e-5
    # With self, the nearest persona is the persona itself (cosine 1).
    assert all(r["sources"][0] == r["target"] for r in data["variants"][MOE_SELF]["routes"])
    path = moe.write_results(layout, "study", data)
    assert path == layout.root / "results" / "study" / "moe" / "moe_sparse_results.json"
    assert moe.merged_from_results(moe.read_results(layout, "study") or {}, layout.root) == merged


def test_missing_adapters_are_named(stored: tuple[Any, int, list[Any]], tmp_path: Path) -> None:
    engine, dataset_id, personas = stored
    adapters = _adapters(personas[:3], tmp_path / "personas")
    scope = MoeScope("study", dataset_id, None, 4, personas)
    layout = storage.OutputLayout(tmp_path / "out")
    with pytest.raises(ValueError, match=personas[3].key):
        moe.merge_all(engine, layout, scope, adapters, MoeSettings(k=2))
    with pytest.raises(ValueError, match="no adapter"):
        moe.evaluate_by_persona(engine, scope, None, "persona_adapters", adapters)  # type: ignore[arg-type]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="k=0"):
        MoeSettings(k=0)
    with pytest.raises(ValueError, match="weighting"):
        MoeSettings(weighting="max")
    with pytest.raises(ValueError, match="svd"):
        MoeSettings(merge_method="svd")


def test_a_merge_is_the_same_bytes_under_any_output_root(
    stored: tuple[Any, int, list[Any]], tmp_path: Path
) -> None:
    """Two machines merge the same per-persona adapters, each from its own output root:
    the merged adapters (``merge.json`` included) and the results file are byte for byte the
    same, and name no folder of either machine."""
    import shutil

    from evaluators.moe.merge import MERGE_INFO_NAME
    from evaluators.moe.plan import adapter_name

    engine, dataset_id, personas = stored
    sources = _adapters(personas, tmp_path / "trained")
    scope = MoeScope("study", dataset_id, None, 4, personas)
    made = {}
    for root in (tmp_path / "machine-a", tmp_path / "elsewhere" / "machine-b"):
        layout = storage.OutputLayout(root)
        adapters = {}
        for key, source in sources.items():
            local = layout.study_adapter_dir("study", "personas", adapter_name(key))
            shutil.copytree(source.path, local)
            adapters[key] = PersonaAdapter(key, local, source.sha256)
        data, merged = moe.merge_all(engine, layout, scope, adapters, MoeSettings(k=2))
        results = moe.write_results(layout, "study", data).read_text()
        assert str(tmp_path) not in results
        for variant in merged.values():
            for adapter in variant.values():
                assert str(tmp_path) not in (adapter.path / MERGE_INFO_NAME).read_text()
        shas = {v: {t: a.sha256 for t, a in m.items()} for v, m in merged.items()}
        made[root.name] = (results, shas)
    assert made["machine-a"] == made["machine-b"]


def test_mixed_adapter_batches_store_the_replies_of_persona_by_persona(
    stored: tuple[Any, int, list[Any]], tiny_base: Any, tmp_path: Path
) -> None:
    engine, dataset_id, personas = stored
    adapters = _adapters(personas, tmp_path / "personas")
    replies = {}
    for batches in ("per_adapter", "mixed"):
        config = EvalConfig(max_new_tokens=6, adapter_batches=batches)
        scope = MoeScope(f"study_{batches}", dataset_id, None, 4, personas, config)
        result = moe.evaluate_by_persona(engine, scope, tiny_base, "persona_adapters", adapters)
        with storage.session_scope(engine) as session:
            rows = storage.evaluation_results(session, result.run_id)
        replies[batches] = {r.example_id: r.generated for r in rows}
    assert len(replies["mixed"]) == 4 * 2
    assert replies["mixed"] == replies["per_adapter"]
    assert len(set(replies["mixed"].values())) > 2


def test_a_broken_results_file_is_named(tmp_path: Path) -> None:
    """The results file read back goes through the one JSON reader: a damaged one names the
    file and line (it raised RecursionError, no file named); a missing one is none yet."""
    layout = storage.OutputLayout(tmp_path)
    assert moe.read_results(layout, "study") is None
    path = moe.results_path(layout, "study")
    path.parent.mkdir(parents=True)
    path.write_text('{"variants":\n' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        moe.read_results(layout, "study")
    assert str(info.value) == f"{path}: line 2: nested deeper than 64 levels"
