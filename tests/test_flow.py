"""The whole path on a tiny scale: data -> clusters -> a trained adapter -> evaluation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import storage
from evaluators.config import EvalConfig
from evaluators.scoring.method_run import RunKey, eval_items, evaluate_method
from hpo.datasets import cluster_dataset, import_dataset, load_cluster
from tests.conftest import write_small_dataset
from trainers.batching import prompt_pairs
from trainers.config import TrainConfig
from trainers.data import SplitConfig
from trainers.recipe import train_lora


@pytest.mark.timeout(120, func_only=True)
def test_data_to_clusters_to_adapter_to_evaluation(tmp_path: Path, tiny_base) -> None:  # type: ignore[no-untyped-def]
    from peft.utils import CONFIG_NAME

    url = f"sqlite:///{tmp_path / 'flow.db'}"
    engine = storage.open_storage(url)
    imported = import_dataset(
        engine, write_small_dataset(tmp_path / "d.jsonl"), name="flow", split=SplitConfig(n_test=4)
    )
    assert (imported.n_personas, imported.n_examples) == (20, 320)

    clustering_id, clustering = cluster_dataset(engine, "flow", k=3)
    sizes = [c.n_personas for c in clustering.clusters]
    assert sizes == sorted(sizes) and sum(sizes) == 20
    assert -1 <= clustering.silhouette <= 1

    cluster = load_cluster(engine, "flow", 3, 2)
    assert cluster.clustering_id == clustering_id
    assert len(cluster.personas) == sizes[2]
    adapter = tmp_path / "adapter"
    result = train_lora(
        tiny_base,
        TrainConfig(epochs=2, batch_size=4, learning_rate=1e-3),
        prompt_pairs(cluster.personas, "train", 6),
        prompt_pairs(cluster.personas, "val"),
        save_dir=adapter,
    )
    assert (adapter / CONFIG_NAME).is_file()

    items = eval_items(cluster.personas, "test")
    assert len(items) == 4 * len(cluster.personas)
    results = {}
    short = EvalConfig(max_new_tokens=24)
    for method, adapter_dir in (("cluster_lora", adapter), ("base_model", None)):
        key = RunKey(
            "flow", method, cluster.dataset_id, clustering_id, cluster_id=2, eval_config=short
        )
        results[method] = evaluate_method(engine, key, tiny_base, items, adapter_dir=adapter_dir)
    lora, base = results["cluster_lora"], results["base_model"]
    assert lora.n_examples == base.n_examples == len(items)
    assert set(lora.per_persona) == {p.key for p in cluster.personas}
    assert 0 < base.mean_similarity < 1 and 0 < lora.mean_similarity < 1
    # fine-tuning on the cluster's replies moves the generations toward the references
    assert lora.mean_similarity > base.mean_similarity, (lora.mean_similarity, base.mean_similarity)
    assert result.final_eval_loss == result.eval_losses[-1][1]

    # a second run of the same evaluation resumes from storage: no new rows, same numbers
    again = evaluate_method(
        engine,
        RunKey(
            "flow", "base_model", cluster.dataset_id, clustering_id, cluster_id=2, eval_config=short
        ),
        tiny_base,
        items,
        adapter_dir=None,
    )
    assert again.run_id == base.run_id and again.mean_similarity == base.mean_similarity
    with storage.session_scope(engine) as session:
        assert len(storage.evaluation_results(session, base.run_id)) == len(items)


def _close(a: Any, b: Any) -> bool:
    """Equal at any depth, floats to a relative 1e-6 (far above float32 rounding, 1e-8)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path: Path) -> None:
    """`hpo demo` at a small scale: two workers, pruning, promotion, evaluation, report."""
    from peft.utils import CONFIG_NAME

    root = tmp_path / "demo"
    command = [
        sys.executable,
        "-m",
        "hpo",
        "demo",
        "--output-root",
        str(root),
        "--personas",
        "30",
        "--examples",
        "14",
        "--n-trials",
        "5",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for text in ("cluster", "silhouette", "best eval_loss", "similarity", "results", "Decision"):
        assert text in out
    assert "…" not in out  # piped: tables as plain rows, the summary as markdown, nothing cut
    comparison = root / "results" / "demo-cluster4" / "comparison"
    for name in ("comprehensive_comparison.html", "comparison_summary.md"):
        assert (comparison / name).stat().st_size > 0, name
    summary = (comparison / "comparison_summary.md").read_text()
    for method in ("Unified", "MoE", "Base"):
        assert method.lower() in summary.lower(), method
    moe = root / "results" / "demo-cluster4" / "moe" / "moe_sparse_results.json"
    assert json.loads(moe.read_text())
    report = json.loads(
        (
            root / "results" / "demo-cluster4" / "cluster_lora" / "cluster_lora_results.json"
        ).read_text()
    )
    assert set(report["methods"]) == {
        "cluster_lora",
        "base_model",
        "unified_adapter",
        "cluster0_adapter",
        "copy_persona",
        "reference_ceiling",
        "persona_swapped",
    }
    assert 0 < report["reference_ceiling"] < 1
    for method in report["methods"].values():
        assert 0 < method["floor"] < 1 and method["normalized"] < 1
    assert (
        root / "models" / "demo-cluster4" / "lora_clusters" / "cluster_04" / CONFIG_NAME
    ).is_file()
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo",
            "study",
            "status",
            "--json",
            "--study",
            "demo-cluster4",
            "--storage",
            f"sqlite:///{root / 'hpo.db'}",
        ],
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["finished"] == 5

    # a second run resumes: no new trials, the same evaluation rows, the same numbers
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads(
        (
            root / "results" / "demo-cluster4" / "cluster_lora" / "cluster_lora_results.json"
        ).read_text()
    )
    # Equal to float32 rounding: the floor embeds its texts in other batches in a new process.
    assert _close(rerun["methods"], report["methods"])
    engine = storage.open_storage(f"sqlite:///{root / 'hpo.db'}")
    with storage.session_scope(engine) as session:
        runs = storage.list_evaluation_runs(session, "demo-cluster4")
        # the top trials, the baselines once each, and the MoE variants
        assert len(runs) == len({(r.method, r.trial_number) for r in runs})
        for run in runs:
            assert len(storage.evaluation_results(session, run.id)) == run.n_examples
